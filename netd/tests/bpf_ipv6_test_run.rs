//! BPF_PROG_TEST_RUN tests of IPv6 in the programs: the parser
//! (extension header chains up to the bound, fragments, truncated
//! headers: each refused packet counted by its reason), the policy rows of
//! SPEC section 4 at the container veth, and at the uplink the drop of
//! what is no reply (TC and the XDP prefilter). Needs root.
mod common;

use common::{
    assert_verdict, counter, endpoint, endpoint6, load, network, network6,
    packet6::{Addr6, Pkt6, DSTOPTS, HOPOPTS},
    run_classifier, run_prefilter,
    verify::verify6,
    Bpffs, LO_IFINDEX, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS,
};

use netd::datapath::{
    addr_key, Datapath, HostRouting, FROM_CONTAINER, TO_CONTAINER, UPLINK_IN, UPLINK_OUT,
};
use netd_common::{proto::IPPROTO_UDP, Uplink, NET_F_ICC, NET_F_INTERNAL, NET_F_MASQUERADE};

const OPEN: u32 = NET_F_ICC | NET_F_MASQUERADE;
const ME: &str = "fd00:a::2";
const PEER: &str = "fd00:a::3";
const GW: &str = "fd00:a::1";
const OTHER: &str = "fd00:b::2";
const OTHER_GW: &str = "fd00:b::1";
const WORLD: &str = "2001:db8::9";
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 1, 0, 1];
/// A container's and the host's link-local addresses.
const ME_LL: &str = "fe80::42:aff:fe01:2";
const HOST_LL: &str = "fe80::42:aff:fe01:1";
/// The body of a router advertisement (hop limit 64, no options).
const RA: [u8; 12] = [64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

const ISO: &str = "network-isolation";
const SPOOF: &str = "spoofed-source";
const ICC: &str = "icc-disabled";
const INT: &str = "internal-network";
const NO6: &str = "ipv6-not-enabled";
const EXT: &str = "ipv6-ext-headers";
const TRUNC: &str = "truncated";
const NAR: &str = "not-a-reply";

/// Container fd00:a::2 (and 10.1.0.2) on network 1 (`flags`), network 2
/// is fd00:b::/64; the loopback device is the endpoint's veth and uplink.
fn datapath(fs: &Bpffs, flags: u32, with_ipv6: bool) -> Datapath {
    let mut dp = load(fs);
    network(&mut dp, 1, "10.1.0.0/24", [10, 1, 0, 1], flags);
    network6(&mut dp, 1, "fd00:a::/64", GW, flags);
    network(&mut dp, 2, "10.2.0.0/24", [10, 2, 0, 1], OPEN);
    network6(&mut dp, 2, "fd00:b::/64", OTHER_GW, OPEN);
    let ep = endpoint([10, 1, 0, 2], 1, flags, [10, 1, 0, 1]);
    dp.set_endpoint(LO_IFINDEX, ep).unwrap();
    if with_ipv6 {
        dp.set_endpoint6(LO_IFINDEX, endpoint6(ME, GW, GW_MAC))
            .unwrap();
    }
    dp
}

/// A UDP datagram from port 1 to port 2.
fn udp(src: impl Addr6, dst: impl Addr6) -> Pkt6 {
    Pkt6::udp(src, dst, 1, 2)
}

/// One case of [`cases`]: the program, the packet, the verdict, the drop
/// reason it must count (once for a drop, never for a pass), its name.
type Case<'a> = (&'a str, Pkt6, u32, &'a str, &'a str);

/// Runs the cases in order (a case may leave state the next one needs).
fn cases(dp: &mut Datapath, cases: Vec<Case>) {
    for (prog, p, verdict, reason, what) in cases {
        assert_verdict(dp, prog, &p.bytes(), verdict, reason, what);
    }
}

#[test]
fn ipv6_rows_at_the_container_veth() {
    let fs = Bpffs::new("v6-rows");
    let mut dp = datapath(&fs, OPEN, true);
    // Router advertisements and redirects from a container.
    let mut ra = Pkt6::icmp(ME_LL, "ff02::1", 134, &RA);
    ra.hop_limit = 255;
    let (from, to) = (FROM_CONTAINER, TO_CONTAINER);
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (from, udp(ME, PEER), TC_ACT_OK, ISO, "same network"),
        (from, udp(ME, GW), TC_ACT_OK, ISO, "gateway"),
        (from, udp(ME, OTHER_GW), TC_ACT_OK, ISO, "other network's gateway (host)"),
        (from, udp(ME, WORLD), TC_ACT_OK, ISO, "world"),
        (from, udp(ME, OTHER), TC_ACT_SHOT, ISO, "other network"),
        (from, Pkt6::echo(ME, OTHER, true, 7), TC_ACT_SHOT, ISO, "other network, ICMPv6"),
        (to, udp(OTHER, ME), TC_ACT_SHOT, ISO, "from another network"),
        (to, udp(PEER, ME), TC_ACT_OK, ISO, "from the same network"),
        (to, udp(WORLD, ME), TC_ACT_OK, ISO, "from beyond the host"),
        (from, udp("fd00:a::9", WORLD), TC_ACT_SHOT, SPOOF, "other source of the subnet"),
        (from, udp(OTHER, PEER), TC_ACT_SHOT, SPOOF, "another network's source"),
        (from, udp("fe80::1", WORLD), TC_ACT_SHOT, SPOOF, "link-local source off the link"),
        (from, udp("::", PEER), TC_ACT_SHOT, SPOOF, "unspecified source, unicast"),
        (from, ra, TC_ACT_SHOT, "nd-router-message", "router advertisement"),
    ];
    cases(&mut dp, rows);
}

/// Neighbour solicitation for `target` from `src` to its solicited-node
/// group (hop limit 255 as RFC 4861 requires).
fn ns(src: &str, target: &str) -> Pkt6 {
    let t = target.v6().octets();
    let group = format!("ff02::1:ff{:02x}:{:02x}{:02x}", t[13], t[14], t[15]);
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&t);
    let mut p = Pkt6::icmp(src, group.as_str(), 135, &body);
    p.hop_limit = 255;
    p.dmac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    p
}

#[test]
fn icc_off_keeps_the_gateway_and_neighbour_discovery() {
    let fs = Bpffs::new("v6-icc");
    let mut dp = datapath(&fs, NET_F_MASQUERADE, true);
    let mut forged = ns(ME_LL, PEER);
    forged.hop_limit = 64;
    let ll = udp(ME_LL, "fe80::42:aff:fe01:3");
    let to_bridge = Pkt6 {
        dst: HOST_LL.v6(),
        dmac: GW_MAC,
        ..ll.clone()
    };
    let peer_at_mac = Pkt6 {
        dst: "fe80::42:aff:fe01:3".v6(),
        ..to_bridge.clone()
    };
    let mut from_host = Pkt6::icmp(HOST_LL, "ff02::1", 134, &RA);
    from_host.smac = GW_MAC;
    from_host.hop_limit = 255;
    let mut mcast = Pkt6::udp(ME, "ff02::fb", 5353, 5353);
    mcast.dmac = [0x33, 0x33, 0, 0, 0, 0xfb];
    let (from, to) = (FROM_CONTAINER, TO_CONTAINER);
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (from, udp(ME, PEER), TC_ACT_SHOT, ICC, "peer"),
        (to, udp(PEER, ME), TC_ACT_SHOT, ICC, "from the peer"),
        (from, udp(ME, GW), TC_ACT_OK, ICC, "gateway"),
        (from, ns(ME_LL, PEER), TC_ACT_OK, ICC, "neighbour solicitation, link-local source"),
        (from, ns(ME, GW), TC_ACT_REDIRECT, ICC, "neighbour solicitation for the gateway (answered)"),
        (from, ns("::", ME), TC_ACT_OK, ICC, "duplicate address detection"),
        (from, forged, TC_ACT_SHOT, ICC, "ICMPv6 135 with hop limit 64 is no ND"),
        (from, ll, TC_ACT_SHOT, ICC, "link-local to a peer"),
        (from, to_bridge, TC_ACT_OK, ICC, "link-local to the bridge"),
        (from, peer_at_mac, TC_ACT_SHOT, ICC, "a peer's link-local sent to the bridge's MAC"),
        (to, from_host, TC_ACT_OK, ICC, "the host's router advertisement"),
        (from, mcast, TC_ACT_SHOT, ICC, "multicast"),
    ];
    cases(&mut dp, rows);
}

/// Host veth of the peer container fd00:a::3 (network 1) and of
/// fd00:b::2 (network 2) in [`neighbour_solicitations_are_answered`].
const PEER_IFINDEX: u32 = 9001;
const OTHER_IFINDEX: u32 = 9002;
/// Link-local addresses of the peer (10.1.0.3) and of 10.2.0.2 on network 2.
const PEER_LL: &str = "fe80::42:aff:fe01:3";
const OTHER_LL: &str = "fe80::42:aff:fe02:2";
/// The asking container's MAC.
const ME_MAC: [u8; 6] = [0x02, 0x42, 10, 1, 0, 2];

/// The advertisement `out` must be: from `target` at `mac` to `asker` at
/// ME_MAC, hop limit 255, flags `flags`, target option `mac`, checksum
/// right (verify6 checks it).
fn assert_advert(out: &[u8], asker: &str, target: &str, mac: [u8; 6], flags: u8, what: &str) {
    assert_eq!(out.len(), 86, "{what}: frame length");
    assert_eq!(&out[0..6], &ME_MAC, "{what}: to the asker's MAC");
    assert_eq!(&out[6..12], &mac, "{what}: from the target's MAC");
    let seen = verify6(out);
    assert_eq!(seen.src, target.v6(), "{what}: from the target");
    assert_eq!(seen.dst, asker.v6(), "{what}: to the asker");
    assert_eq!(seen.proto, 58, "{what}: ICMPv6");
    assert_eq!(seen.ttl, 255, "{what}: hop limit");
    let icmp = &out[seen.l4_at..];
    assert_eq!(
        (icmp[0], icmp[1]),
        (136, 0),
        "{what}: a neighbour advertisement"
    );
    assert_eq!(icmp[4], flags, "{what}: flags");
    assert_eq!(&icmp[8..24], &target.v6().octets(), "{what}: target");
    assert_eq!(&icmp[24..26], &[2, 1], "{what}: target link-layer option");
    assert_eq!(&icmp[26..32], &mac, "{what}: target link-layer address");
}

/// Neighbour discovery at the container's veth: a solicitation for the
/// gateway or for a container of the same network is answered straight
/// back (no bridge flood for a host's FORWARD chain to drop); one for a
/// container of another network, an unknown target, duplicate address
/// detection or a forged hop limit goes on unanswered.
#[test]
fn neighbour_solicitations_are_answered() {
    let fs = Bpffs::new("v6-nd");
    let mut dp = datapath(&fs, OPEN, true);
    let peer_mac = netd_common::mac_for_addr([10, 1, 0, 3]);
    dp.set_endpoint(
        PEER_IFINDEX,
        endpoint([10, 1, 0, 3], 1, OPEN, [10, 1, 0, 1]),
    )
    .unwrap();
    dp.set_endpoint6(PEER_IFINDEX, endpoint6(PEER, GW, GW_MAC))
        .unwrap();
    dp.set_endpoint(
        OTHER_IFINDEX,
        endpoint([10, 2, 0, 2], 2, OPEN, [10, 2, 0, 1]),
    )
    .unwrap();
    dp.set_endpoint6(OTHER_IFINDEX, endpoint6(OTHER, OTHER_GW, GW_MAC))
        .unwrap();
    let asked = |src: &str, target: &str| {
        let mut p = ns(src, target);
        p.smac = ME_MAC;
        // The source link-layer address option, as Linux sends it.
        p.l4.extend_from_slice(&[1, 1]);
        p.l4.extend_from_slice(&ME_MAC);
        p
    };
    let replies = counter(&dp, "nd-reply");
    let cases: [(&str, &str, [u8; 6], u8, &str); 6] = [
        (ME, PEER, peer_mac, 0x60, "peer, global source"),
        (ME_LL, PEER, peer_mac, 0x60, "peer, link-local source"),
        (ME_LL, PEER_LL, peer_mac, 0x60, "peer's link-local address"),
        (ME, GW, GW_MAC, 0xe0, "gateway (router flag)"),
        (ME_LL, GW, GW_MAC, 0xe0, "gateway, link-local source"),
        (
            ME_LL,
            HOST_LL,
            GW_MAC,
            0xe0,
            "the bridge's link-local address",
        ),
    ];
    for (src, target, mac, flags, what) in cases {
        let (verdict, out) = run_classifier(&mut dp, FROM_CONTAINER, &asked(src, target).bytes());
        assert_eq!(verdict, TC_ACT_REDIRECT, "{what}");
        assert_advert(&out, src, target, mac, flags, what);
    }
    // Unicast (neighbour unreachability detection) and without the
    // source option: answered the same.
    let mut nud = ns(ME, PEER);
    nud.smac = ME_MAC;
    nud.dst = PEER.v6();
    nud.dmac = peer_mac;
    let (verdict, out) = run_classifier(&mut dp, FROM_CONTAINER, &nud.bytes());
    assert_eq!(verdict, TC_ACT_REDIRECT, "unicast solicitation");
    assert_advert(&out, ME, PEER, peer_mac, 0x60, "unicast solicitation");
    assert_eq!(
        counter(&dp, "nd-reply") - replies,
        7,
        "every answer counted"
    );

    let mut forged = asked(ME, PEER);
    forged.hop_limit = 64;
    let mut behind_ext = asked(ME, PEER).opts(DSTOPTS, 1);
    behind_ext.hop_limit = 255;
    let unanswered: [(Pkt6, u32, &str); 7] = [
        (
            asked(ME, OTHER),
            TC_ACT_OK,
            "a container of another network",
        ),
        (
            asked(ME_LL, OTHER_LL),
            TC_ACT_OK,
            "another network's container's link-local",
        ),
        (asked(ME_LL, ME_LL), TC_ACT_OK, "its own link-local address"),
        (asked(ME, "fd00:a::77"), TC_ACT_OK, "nobody's address"),
        (asked("::", PEER), TC_ACT_OK, "duplicate address detection"),
        (forged, TC_ACT_OK, "hop limit 64: no neighbour discovery"),
        (behind_ext, TC_ACT_OK, "behind an extension header"),
    ];
    for (p, want, what) in unanswered {
        let frame = p.bytes();
        let (verdict, out) = run_classifier(&mut dp, FROM_CONTAINER, &frame);
        assert_eq!(verdict, want, "{what}");
        if want == TC_ACT_OK {
            assert_eq!(out, frame, "{what}: the packet goes on unchanged");
        }
    }
    assert_eq!(
        counter(&dp, "nd-reply") - replies,
        7,
        "nothing else answered"
    );
}

#[test]
fn internal_network_stays_in_its_subnet() {
    let fs = Bpffs::new("v6-internal");
    let mut dp = datapath(&fs, NET_F_INTERNAL | NET_F_ICC, true);
    let (from, to) = (FROM_CONTAINER, TO_CONTAINER);
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (from, udp(ME, WORLD), TC_ACT_SHOT, INT, "world"),
        (from, udp(ME, OTHER_GW), TC_ACT_SHOT, INT, "other network's gateway"),
        (from, udp(ME, GW), TC_ACT_OK, INT, "own gateway"),
        (from, udp(ME, PEER), TC_ACT_OK, INT, "same network"),
        (to, udp(WORLD, ME), TC_ACT_SHOT, INT, "from the world"),
        (UPLINK_OUT, udp(ME, WORLD), TC_ACT_OK, INT, "not an uplink yet"),
    ];
    cases(&mut dp, rows);
    dp.set_uplink_entry(LO_IFINDEX, uplink()).unwrap();
    let leaving = (
        UPLINK_OUT,
        udp(ME, WORLD),
        TC_ACT_SHOT,
        INT,
        "leaving by the uplink",
    );
    cases(&mut dp, vec![leaving]);
}

/// The issue 13 leak: an endpoint on a network without IPv6 (no
/// `ENDPOINT6` entry) sends IPv6 to another network's address.
#[test]
fn without_ipv6_only_link_local_traffic_passes() {
    let fs = Bpffs::new("v6-none");
    let mut dp = datapath(&fs, OPEN, false);
    let (from, to) = (FROM_CONTAINER, TO_CONTAINER);
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (from, udp(ME, OTHER), TC_ACT_SHOT, NO6, "to another network"),
        (from, Pkt6::echo(ME, OTHER, true, 1), TC_ACT_SHOT, NO6, "ping to another network"),
        (from, udp(ME, WORLD), TC_ACT_SHOT, NO6, "to the world"),
        (to, udp(OTHER, ME), TC_ACT_SHOT, NO6, "from another network"),
        (from, udp("fe80::1", "fe80::2"), TC_ACT_OK, NO6, "link-local"),
        (from, ns("fe80::1", "fe80::2"), TC_ACT_OK, NO6, "neighbour discovery"),
    ];
    cases(&mut dp, rows);
    // Given an address, the same endpoint is judged by the network rules.
    dp.set_endpoint6(LO_IFINDEX, endpoint6(ME, GW, GW_MAC))
        .unwrap();
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (from, udp(ME, OTHER), TC_ACT_SHOT, ISO, "isolated once it has IPv6"),
        (from, udp(ME, WORLD), TC_ACT_OK, NO6, "world once it has IPv6"),
    ];
    cases(&mut dp, rows);
    dp.remove_endpoint6(LO_IFINDEX).unwrap();
    let removed = (from, udp(ME, WORLD), TC_ACT_SHOT, NO6, "address removed");
    cases(&mut dp, vec![removed]);
}

#[test]
fn extension_header_chains_are_followed_up_to_the_bound() {
    let fs = Bpffs::new("v6-ext");
    let mut dp = datapath(&fs, OPEN, true);
    let mut eight = udp(ME, PEER).opts(HOPOPTS, 1);
    for _ in 0..7 {
        eight = eight.opts(DSTOPTS, 2);
    }
    let nine = eight.clone().opts(DSTOPTS, 1);
    let cross = Pkt6 {
        dst: OTHER.v6(),
        ..eight.clone()
    };
    let from = FROM_CONTAINER;
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (from, eight, TC_ACT_OK, EXT, "8 extension headers"),
        (from, nine, TC_ACT_SHOT, EXT, "9 extension headers"),
        (from, cross, TC_ACT_SHOT, ISO, "a chain does not hide the destination"),
        (from, udp(ME, PEER).routing(0), TC_ACT_OK, EXT, "routing header, no segments left"),
        (from, udp(ME, GW).routing(1), TC_ACT_SHOT, EXT, "routing header with segments left"),
        (from, udp(ME, PEER).auth().opts(DSTOPTS, 1), TC_ACT_OK, EXT, "AH then options"),
    ];
    cases(&mut dp, rows);
    // MLD reports carry a hop-by-hop router alert; with icc off they pass
    // as link control only when the chain is read to the ICMPv6 type.
    let mut dp = datapath(&fs, NET_F_MASQUERADE, true);
    let mut mld = Pkt6::icmp(ME_LL, "ff02::16", 143, &[0, 0, 0, 0]).opts(HOPOPTS, 1);
    mld.hop_limit = 1;
    let mld = (from, mld, TC_ACT_OK, ICC, "MLD report behind hop-by-hop");
    cases(&mut dp, vec![mld]);
}

#[test]
fn fragments_are_judged_by_their_addresses() {
    let fs = Bpffs::new("v6-frag");
    let mut dp = datapath(&fs, OPEN, true);
    let later = Pkt6::new(ME, PEER, IPPROTO_UDP, vec![0xab; 16]).fragment(2, false, 7);
    let later_cross = Pkt6 {
        dst: OTHER.v6(),
        ..later.clone()
    };
    // RFC 7112: the whole chain, upper-layer header included, in the first.
    let headless = Pkt6::new(ME, PEER, IPPROTO_UDP, vec![0xab; 4]).fragment(0, true, 9);
    let mut chain_cut = Pkt6::new(ME, PEER, IPPROTO_UDP, vec![])
        .fragment(0, true, 10)
        .opts(DSTOPTS, 4);
    chain_cut.ext.last_mut().unwrap().1.truncate(8);
    let from = FROM_CONTAINER;
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (from, udp(ME, PEER).fragment(0, true, 7), TC_ACT_OK, EXT, "first fragment"),
        (from, udp(ME, PEER).fragment(0, false, 8), TC_ACT_OK, EXT, "atomic fragment"),
        (from, later, TC_ACT_OK, EXT, "later fragment"),
        (from, later_cross, TC_ACT_SHOT, ISO, "later fragment to another network"),
        (from, headless, TC_ACT_SHOT, EXT, "first fragment without its UDP header"),
        (from, chain_cut, TC_ACT_SHOT, EXT, "first fragment ending inside an options header"),
    ];
    cases(&mut dp, rows);
}

#[test]
fn truncated_packets_are_dropped_and_counted() {
    let fs = Bpffs::new("v6-trunc");
    let mut dp = datapath(&fs, OPEN, true);
    let mut long = udp(ME, PEER);
    long.payload_len_delta = 8;
    let mut cut_udp = udp(ME, PEER);
    cut_udp.l4.truncate(6);
    let mut cut_opts = udp(ME, PEER).opts(DSTOPTS, 4);
    cut_opts.l4.clear();
    cut_opts.ext[0].1.truncate(12);
    let mut cut_icmp = Pkt6::echo(ME, PEER, true, 1);
    cut_icmp.l4.truncate(0);
    let from = FROM_CONTAINER;
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (from, long, TC_ACT_SHOT, TRUNC, "payload length past the frame"),
        (from, cut_udp.clone(), TC_ACT_SHOT, TRUNC, "UDP header cut short"),
        (from, cut_opts, TC_ACT_SHOT, TRUNC, "options header cut short"),
        (from, cut_icmp, TC_ACT_SHOT, TRUNC, "no ICMPv6 header"),
        // (The kernel's test_run refuses IPv6 frames shorter than the
        // fixed header, so truncation is tested past it.)
        (TO_CONTAINER, cut_udp, TC_ACT_SHOT, TRUNC, "cut short toward the container"),
    ];
    cases(&mut dp, rows);
    let mut bad_version = udp(ME, PEER).bytes();
    bad_version[14] = 0x40;
    let before = counter(&dp, "malformed");
    assert_eq!(run_classifier(&mut dp, from, &bad_version).0, TC_ACT_SHOT);
    assert_eq!(
        counter(&dp, "malformed") - before,
        1,
        "version 4 in an IPv6 frame"
    );
}

fn uplink() -> Uplink {
    Uplink {
        addr: addr_key([198, 51, 100, 7].into()),
        port_min: 40000,
        port_max: 40009,
    }
}

/// A packet-too-big error from a router to the container quoting `quoted`.
fn too_big(quoted: &Pkt6) -> Pkt6 {
    let mut body = 1280u32.to_be_bytes().to_vec();
    body.extend_from_slice(&quoted.bytes()[14..]);
    Pkt6::icmp("2001:db8::1", ME, 2, &body)
}

#[test]
fn world_reaches_a_container_address_only_with_a_reply() {
    let fs = Bpffs::new("v6-uplink");
    let mut dp = datapath(&fs, OPEN, true);
    dp.set_uplink_entry(LO_IFINDEX, uplink()).unwrap();
    // What is let in goes to the stack (with eBPF host routing it is
    // redirected into the container: bpf_nat66_test_run).
    dp.set_host_routing(HostRouting::Kernel).unwrap();
    let xdp = |dp: &mut Datapath, p: &Pkt6| run_prefilter(dp, &p.bytes()).0;
    let (up_in, up_out) = (UPLINK_IN, UPLINK_OUT);
    let unsolicited = Pkt6::udp(WORLD, ME, 53, 4444);
    let ping = Pkt6::echo(WORLD, ME, true, 3);
    let host = Pkt6::udp(WORLD, "2001:db8::7", 53, 22);
    let mut long_chain = unsolicited.clone();
    for _ in 0..9 {
        long_chain = long_chain.opts(DSTOPTS, 1);
    }
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (up_in, unsolicited.clone(), TC_ACT_SHOT, NAR, "unsolicited UDP"),
        (up_in, ping.clone(), TC_ACT_SHOT, NAR, "echo request"),
        (up_in, Pkt6::udp(WORLD, GW, 53, 4444), TC_ACT_SHOT, NAR, "the gateway address"),
        (up_in, host.clone(), TC_ACT_OK, NAR, "to the host"),
        (up_in, long_chain, TC_ACT_SHOT, EXT, "a chain the parser refuses"),
    ];
    cases(&mut dp, rows);
    assert_eq!(
        xdp(&mut dp, &unsolicited),
        XDP_DROP,
        "prefilter: unsolicited UDP"
    );
    assert_eq!(xdp(&mut dp, &ping), XDP_DROP, "prefilter: echo request");
    assert_eq!(xdp(&mut dp, &host), XDP_PASS, "prefilter: to the host");

    // The container's flow goes out: its replies come in, behind
    // extension headers too, and the ICMPv6 errors that quote it.
    let flow = Pkt6::udp(ME, WORLD, 4444, 53);
    let behind = unsolicited.clone().opts(DSTOPTS, 2);
    let mut other_port = unsolicited.clone();
    other_port.l4[0..2].copy_from_slice(&54u16.to_be_bytes());
    let ptb = too_big(&flow);
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (up_out, flow, TC_ACT_OK, NAR, "flow out"),
        (up_in, unsolicited.clone(), TC_ACT_OK, NAR, "reply"),
    ];
    cases(&mut dp, rows);
    assert_eq!(xdp(&mut dp, &unsolicited), XDP_PASS, "prefilter: reply");
    let stray = too_big(&Pkt6::udp(ME, WORLD, 4445, 53));
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (up_in, behind.clone(), TC_ACT_OK, NAR, "reply behind a destination options header"),
        (up_in, other_port, TC_ACT_SHOT, NAR, "another source port"),
        (up_in, ptb.clone(), TC_ACT_OK, NAR, "packet too big quoting the flow"),
        (up_in, stray, TC_ACT_SHOT, NAR, "packet too big quoting no flow"),
    ];
    cases(&mut dp, rows);
    assert_eq!(
        xdp(&mut dp, &behind),
        XDP_PASS,
        "prefilter: reply behind options"
    );
    assert_eq!(
        xdp(&mut dp, &ptb),
        XDP_PASS,
        "prefilter: ICMPv6 errors go to TC"
    );
    // A reply passes as it came, checksum intact past the options header.
    let (_, out) = run_classifier(&mut dp, up_in, &behind.bytes());
    assert_eq!(out, behind.bytes());
    let seen = verify6(&out);
    assert_eq!((seen.src, seen.dst), (WORLD.v6(), ME.v6()));
    assert_eq!(
        (seen.proto, seen.sport, seen.dport),
        (IPPROTO_UDP, 53, 4444)
    );

    // Echo: the reply to the container's request only. Fragments: the
    // later ones follow a first that was let in.
    let later = Pkt6::new(WORLD, ME, IPPROTO_UDP, vec![0xab; 16]).fragment(2, false, 99);
    let first = unsolicited.clone().fragment(0, true, 99);
    #[rustfmt::skip]
    let rows: Vec<Case> = vec![
        (up_out, Pkt6::echo(ME, WORLD, true, 77), TC_ACT_OK, NAR, "echo out"),
        (up_in, Pkt6::echo(WORLD, ME, false, 77), TC_ACT_OK, NAR, "echo reply"),
        (up_in, Pkt6::echo(WORLD, ME, false, 78), TC_ACT_SHOT, NAR, "echo reply of another id"),
        (up_in, later.clone(), TC_ACT_SHOT, NAR, "later fragment, first not seen"),
        (up_in, first, TC_ACT_OK, NAR, "first fragment of a reply"),
        (up_in, later, TC_ACT_OK, NAR, "later fragment of that reply"),
    ];
    cases(&mut dp, rows);
}
