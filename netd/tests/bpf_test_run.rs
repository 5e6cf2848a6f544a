//! BPF_PROG_TEST_RUN tests of the endpoint programs on crafted frames:
//! parser corner cases (truncated, non-IP, VLAN, IP options, fragments,
//! inconsistent headers) and the policy verdicts they lead to. Needs root.
mod common;

use std::{net::Ipv4Addr, path::Path};

use common::{packet::Pkt, Bpffs};

use aya::programs::{TestRun, TestRunOptions};
use netd::datapath::{addr_key, Datapath, FROM_CONTAINER, TO_CONTAINER};
use netd_common::{Endpoint, NetworkInfo, NET_F_ICC, NET_F_MASQUERADE};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
/// test_run hands the program an skb on the loopback device.
const LO_IFINDEX: u32 = 1;

fn ip(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// Container 10.1.0.2 on network 1 (10.1.0.0/24), network 2 is 10.2.0.0/24.
fn datapath(dir: &Path, net1_flags: u32) -> Datapath {
    let mut dp = Datapath::load(dir, 4096).expect("load programs");
    for (id, subnet, gw, flags) in [
        (1, "10.1.0.0/24", ip([10, 1, 0, 1]), net1_flags),
        (
            2,
            "10.2.0.0/24",
            ip([10, 2, 0, 1]),
            NET_F_ICC | NET_F_MASQUERADE,
        ),
    ] {
        let info = NetworkInfo {
            net_id: id,
            gateway: addr_key(gw),
            flags,
            prefix_len: 24,
        };
        dp.upsert_network(subnet.parse().unwrap(), info).unwrap();
    }
    let ep = Endpoint {
        ip: addr_key(ip([10, 1, 0, 2])),
        net_id: 1,
        net_flags: net1_flags,
        gateway: addr_key(ip([10, 1, 0, 1])),
        mac: [0x02, 0x42, 10, 1, 0, 2],
        _pad: [0; 2],
    };
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
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    };
    dp.program(prog)
        .unwrap()
        .test_run(opts)
        .expect("test_run")
        .return_value
}

fn drops(dp: &Datapath, reason: &str) -> u64 {
    dp.drop_counts()
        .unwrap()
        .into_iter()
        .find(|d| d.reason == reason)
        .unwrap()
        .packets
}

const ME: [u8; 4] = [10, 1, 0, 2];
const PEER: [u8; 4] = [10, 1, 0, 3];
const OTHER: [u8; 4] = [10, 2, 0, 2];

#[test]
fn verdicts_for_well_formed_frames() {
    let fs = Bpffs::new("verdicts");
    let mut dp = datapath(&fs.0, NET_F_ICC | NET_F_MASQUERADE);
    let same = udp(ME, PEER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &same), TC_ACT_OK);
    let world = udp(ME, [192, 0, 2, 1]).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &world), TC_ACT_OK);
    let other_gw = udp(ME, [10, 2, 0, 1]).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &other_gw), TC_ACT_OK);
    let cross = udp(ME, OTHER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &cross), TC_ACT_SHOT);
    assert_eq!(drops(&dp, "network-isolation"), 1);
    let inbound_cross = udp(OTHER, ME).bytes();
    assert_eq!(run(&mut dp, TO_CONTAINER, &inbound_cross), TC_ACT_SHOT);
    assert_eq!(drops(&dp, "network-isolation"), 2);
    let inbound_peer = udp(PEER, ME).bytes();
    assert_eq!(run(&mut dp, TO_CONTAINER, &inbound_peer), TC_ACT_OK);
    let spoofed = udp([10, 1, 0, 9], PEER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &spoofed), TC_ACT_SHOT);
    assert_eq!(drops(&dp, "spoofed-source"), 1);
}

#[test]
fn icc_off_allows_only_the_gateway() {
    let fs = Bpffs::new("icc");
    let mut dp = datapath(&fs.0, NET_F_MASQUERADE);
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
    assert_eq!(drops(&dp, "icc-disabled"), 3);
}

/// An IPv6 packet between two link-local addresses (no payload).
fn ipv6_link_local() -> Vec<u8> {
    let mut f = vec![0x02, 0x42, 10, 1, 0, 3, 0x02, 0x42, 10, 1, 0, 2, 0x86, 0xdd];
    let mut h = vec![0x60, 0, 0, 0, 0, 0, 59, 255];
    h.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&h);
    f
}

#[test]
fn non_ip_passes_and_vlan_is_dropped() {
    let fs = Bpffs::new("l2");
    let mut dp = datapath(&fs.0, NET_F_ICC);
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
    assert_eq!(drops(&dp, "vlan-tagged"), 2);
}

#[test]
fn malformed_headers_are_dropped_not_misjudged() {
    let fs = Bpffs::new("malformed");
    let mut dp = datapath(&fs.0, NET_F_ICC);
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
    assert_eq!(drops(&dp, "malformed"), cases.len() as u64);
    // A cut-short non-IPv4 frame is not policed here (the host drops it).
    let mut eth_only = udp(ME, PEER);
    eth_only.ethertype = 0x88cc;
    eth_only.truncate_to = Some(20);
    assert_eq!(run(&mut dp, FROM_CONTAINER, &eth_only.bytes()), TC_ACT_OK);
}

#[test]
fn ip_options_and_fragments_are_judged_by_their_addresses() {
    let fs = Bpffs::new("opts");
    let mut dp = datapath(&fs.0, NET_F_ICC);
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
    let mut dp = datapath(&fs.0, NET_F_ICC);
    dp.remove_endpoint_entry(LO_IFINDEX).unwrap();
    let same = udp(ME, PEER).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &same), TC_ACT_SHOT);
    assert_eq!(run(&mut dp, TO_CONTAINER, &same), TC_ACT_SHOT);
    assert_eq!(drops(&dp, "unknown-endpoint"), 2);
}
