//! BPF_PROG_TEST_RUN tests of the endpoint programs on crafted frames:
//! parser corner cases (truncated, non-IP, VLAN, IP options, fragments,
//! inconsistent headers) and the policy verdicts they lead to. Needs root.
mod common;

use common::{
    counter, endpoint, load, network, packet::Pkt, packet6::Pkt6, run_classifier, Bpffs,
    LO_IFINDEX, TC_ACT_OK, TC_ACT_SHOT,
};

use netd::datapath::{Datapath, FROM_CONTAINER, TO_CONTAINER};
use netd_common::{NET_F_ICC, NET_F_MASQUERADE};

/// Container 10.1.0.2 on network 1 (10.1.0.0/24), network 2 is 10.2.0.0/24.
fn datapath(fs: &Bpffs, net1_flags: u32) -> Datapath {
    let mut dp = load(fs);
    network(&mut dp, 1, "10.1.0.0/24", [10, 1, 0, 1], net1_flags);
    let open = NET_F_ICC | NET_F_MASQUERADE;
    network(&mut dp, 2, "10.2.0.0/24", [10, 2, 0, 1], open);
    let ep = endpoint(ME, 1, net1_flags, [10, 1, 0, 1]);
    dp.set_endpoint(LO_IFINDEX, ep).unwrap();
    dp
}

/// A UDP datagram between two containers' MACs (16 bytes of payload).
fn udp(src: [u8; 4], dst: [u8; 4]) -> Pkt {
    Pkt {
        dmac: [0x02, 0x42, 10, 1, 0, 3],
        smac: [0x02, 0x42, 10, 1, 0, 2],
        frag: 0,
        ..Pkt::udp(src, dst, 16)
    }
}

fn run(dp: &mut Datapath, prog: &str, frame: &[u8]) -> u32 {
    run_classifier(dp, prog, frame).0
}

const ME: [u8; 4] = [10, 1, 0, 2];
const PEER: [u8; 4] = [10, 1, 0, 3];
const OTHER: [u8; 4] = [10, 2, 0, 2];

#[test]
fn verdicts_for_well_formed_frames() {
    let fs = Bpffs::new("verdicts");
    let mut dp = datapath(&fs, NET_F_ICC | NET_F_MASQUERADE);
    let same = udp(ME, PEER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &same), TC_ACT_OK);
    let world = udp(ME, [192, 0, 2, 1]).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &world), TC_ACT_OK);
    let other_gw = udp(ME, [10, 2, 0, 1]).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &other_gw), TC_ACT_OK);
    let cross = udp(ME, OTHER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &cross), TC_ACT_SHOT);
    assert_eq!(counter(&dp, "network-isolation"), 1);
    let inbound_cross = udp(OTHER, ME).bytes();
    assert_eq!(run(&mut dp, TO_CONTAINER, &inbound_cross), TC_ACT_SHOT);
    assert_eq!(counter(&dp, "network-isolation"), 2);
    let inbound_peer = udp(PEER, ME).bytes();
    assert_eq!(run(&mut dp, TO_CONTAINER, &inbound_peer), TC_ACT_OK);
    let spoofed = udp([10, 1, 0, 9], PEER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &spoofed), TC_ACT_SHOT);
    assert_eq!(counter(&dp, "spoofed-source"), 1);
}

#[test]
fn icc_off_allows_only_the_gateway() {
    let fs = Bpffs::new("icc");
    let mut dp = datapath(&fs, NET_F_MASQUERADE);
    let peer = udp(ME, PEER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &peer), TC_ACT_SHOT);
    let gw = udp(ME, [10, 1, 0, 1]).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &gw), TC_ACT_OK);
    let bcast = udp(ME, [255, 255, 255, 255]).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &bcast), TC_ACT_SHOT);
    // Link-local IPv6 would cross the bridge too.
    assert_eq!(
        run(&mut dp, FROM_CONTAINER, &ipv6_link_local()),
        TC_ACT_SHOT
    );
    assert_eq!(counter(&dp, "icc-disabled"), 3);
}

/// An IPv6 packet between two link-local addresses (no payload).
fn ipv6_link_local() -> Vec<u8> {
    Pkt6 {
        dmac: [0x02, 0x42, 10, 1, 0, 3],
        smac: [0x02, 0x42, 10, 1, 0, 2],
        hop_limit: 255,
        ..Pkt6::new("fe80::1", "fe80::2", 59, Vec::new())
    }
    .bytes()
}

#[test]
fn non_ip_passes_and_vlan_is_dropped() {
    let fs = Bpffs::new("l2");
    let mut dp = datapath(&fs, NET_F_ICC);
    let mut arp = udp(ME, OTHER);
    arp.ethertype = 0x0806;
    assert_eq!(run(&mut dp, FROM_CONTAINER, &arp.bytes()), TC_ACT_OK);
    assert_eq!(run(&mut dp, FROM_CONTAINER, &ipv6_link_local()), TC_ACT_OK);
    let mut tagged = udp(ME, PEER);
    tagged.vlan = true;
    assert_eq!(run(&mut dp, FROM_CONTAINER, &tagged.bytes()), TC_ACT_SHOT);
    let mut qinq = udp(ME, PEER);
    qinq.ethertype = 0x88a8;
    assert_eq!(run(&mut dp, FROM_CONTAINER, &qinq.bytes()), TC_ACT_SHOT);
    assert_eq!(counter(&dp, "vlan-tagged"), 2);
}

#[test]
fn malformed_headers_are_dropped_not_misjudged() {
    let fs = Bpffs::new("malformed");
    let mut dp = datapath(&fs, NET_F_ICC);
    let mut cases = Vec::new();
    // The kernel's test_run refuses IPv4 frames shorter than 20 bytes of IP
    // header, so truncation is tested inside the options and the payload.
    let mut cut_in_options = udp(ME, PEER);
    cut_in_options.ihl_words = 15;
    cut_in_options.truncate_to = Some(14 + 30);
    cases.push(cut_in_options);
    let mut cut_in_payload = udp(ME, PEER);
    cut_in_payload.truncate_to = Some(14 + 24);
    cases.push(cut_in_payload);
    let mut bad_ihl = udp(ME, PEER);
    bad_ihl.ihl_words = 4;
    cases.push(bad_ihl);
    let mut bad_version = udp(ME, PEER);
    bad_version.version = 6;
    cases.push(bad_version);
    let mut too_long = udp(ME, PEER);
    too_long.total_len_delta = 100;
    cases.push(too_long);
    let mut shorter_than_header = udp(ME, PEER);
    shorter_than_header.total_len_delta = -40;
    cases.push(shorter_than_header);
    for (i, f) in cases.iter().enumerate() {
        assert_eq!(
            run(&mut dp, FROM_CONTAINER, &f.bytes()),
            TC_ACT_SHOT,
            "case {i}"
        );
    }
    assert_eq!(counter(&dp, "malformed"), cases.len() as u64);
    // A cut-short non-IPv4 frame is not policed here (the host drops it).
    let mut eth_only = udp(ME, PEER);
    eth_only.ethertype = 0x88cc;
    eth_only.truncate_to = Some(20);
    assert_eq!(run(&mut dp, FROM_CONTAINER, &eth_only.bytes()), TC_ACT_OK);
}

#[test]
fn ip_options_and_fragments_are_judged_by_their_addresses() {
    let fs = Bpffs::new("opts");
    let mut dp = datapath(&fs, NET_F_ICC);
    for (ihl, frag) in [(6u8, 0u16), (15, 0), (5, 0x2000), (5, 0x00b9), (7, 0x20b9)] {
        let mut same = udp(ME, PEER);
        same.ihl_words = ihl;
        same.frag = frag;
        assert_eq!(
            run(&mut dp, FROM_CONTAINER, &same.bytes()),
            TC_ACT_OK,
            "ihl {ihl} frag {frag:#x}"
        );
        let mut cross = udp(ME, OTHER);
        cross.ihl_words = ihl;
        cross.frag = frag;
        assert_eq!(
            run(&mut dp, FROM_CONTAINER, &cross.bytes()),
            TC_ACT_SHOT,
            "ihl {ihl} frag {frag:#x}"
        );
    }
}

#[test]
fn unknown_endpoint_is_dropped() {
    let fs = Bpffs::new("unknown");
    let mut dp = datapath(&fs, NET_F_ICC);
    dp.remove_endpoint_entry(LO_IFINDEX).unwrap();
    let same = udp(ME, PEER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &same), TC_ACT_SHOT);
    assert_eq!(run(&mut dp, TO_CONTAINER, &same), TC_ACT_SHOT);
    assert_eq!(counter(&dp, "unknown-endpoint"), 2);
}
