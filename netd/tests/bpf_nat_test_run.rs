//! BPF_PROG_TEST_RUN tests of the NAT rewrites: masquerade (uplink_out),
//! reverse NAT (uplink_in) of replies and ICMP errors, and DNAT of published
//! ports (TCP, UDP, SCTP), with every checksum verified by recomputation.
mod common;

use common::{
    assert_verdict, counter, csum, endpoint, ip, load, network,
    packet::{echo, frame, tcp, udp, Pkt},
    run_classifier, run_prefilter,
    verify::verify4,
    Bpffs, LO_IFINDEX, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS,
};

use netd::{
    datapath::{
        addr_key, Datapath, HostRouting, FROM_CONTAINER, TO_CONTAINER, UPLINK_IN, UPLINK_OUT,
    },
    ports::{PortMapping, Proto},
};
use netd_common::{mac_for_addr, Uplink, NET_F_ICC, NET_F_MASQUERADE, TCP_ACK, TCP_RST, TCP_SYN};

const UPLINK_ADDR: [u8; 4] = [198, 51, 100, 7];
const CONTAINER: [u8; 4] = [10, 7, 0, 2];
const SERVER: [u8; 4] = [203, 0, 113, 9];

/// Network 10.7.0.0/24 (masquerading) and the loopback device as uplink.
fn datapath(fs: &Bpffs, ports: (u16, u16)) -> Datapath {
    let mut dp = load(fs);
    network(
        &mut dp,
        1,
        "10.7.0.0/24",
        [10, 7, 0, 1],
        NET_F_ICC | NET_F_MASQUERADE,
    );
    let up = Uplink {
        addr: addr_key(ip(UPLINK_ADDR)),
        port_min: ports.0,
        port_max: ports.1,
    };
    dp.set_uplink_entry(LO_IFINDEX, up).unwrap();
    dp
}

/// The container's packet (`proto`, `l4`) to the server, through
/// `uplink_out`.
fn to_server(dp: &mut Datapath, proto: u8, l4: &[u8]) -> (u32, Vec<u8>) {
    run_classifier(dp, UPLINK_OUT, &frame(CONTAINER, SERVER, proto, l4))
}

/// The server's packet to the uplink address, through `uplink_in`.
fn from_server(dp: &mut Datapath, proto: u8, l4: &[u8]) -> (u32, Vec<u8>) {
    run_classifier(dp, UPLINK_IN, &frame(SERVER, UPLINK_ADDR, proto, l4))
}

#[test]
fn tcp_and_udp_are_masqueraded_and_replies_reversed() {
    let fs = Bpffs::new("nat-tcpudp");
    let mut dp = datapath(&fs, (40000, 40009));
    for proto in [6u8, 17] {
        let l4 = |s, d| {
            if proto == 6 {
                tcp(s, d, 0x02)
            } else {
                udp(s, d)
            }
        };
        let (v, out) = to_server(&mut dp, proto, &l4(33333, 80));
        assert_eq!(v, TC_ACT_OK);
        let seen = verify4(&out);
        assert_eq!(seen.src, ip(UPLINK_ADDR), "proto {proto}");
        assert!(
            (40000..=40009).contains(&seen.sport),
            "port {} out of range",
            seen.sport
        );
        assert_eq!((seen.dst, seen.dport), (ip(SERVER), 80));
        // The same flow keeps its port.
        let (_, again) = to_server(&mut dp, proto, &l4(33333, 80));
        assert_eq!(verify4(&again).sport, seen.sport);
        // The reply comes back to the container's address and port.
        let (v, back) = from_server(&mut dp, proto, &l4(80, seen.sport));
        assert_eq!(v, TC_ACT_OK);
        let back = verify4(&back);
        assert_eq!((back.dst, back.dport), (ip(CONTAINER), 33333));
        assert_eq!((back.src, back.sport), (ip(SERVER), 80));
    }
}

#[test]
fn two_flows_to_one_server_port_get_distinct_ports_and_exhaustion_drops() {
    let fs = Bpffs::new("nat-exhaust");
    let mut dp = datapath(&fs, (40000, 40001));
    let mut used = Vec::new();
    for sport in [1000u16, 1001] {
        let (v, out) = to_server(&mut dp, 17, &udp(sport, 53));
        assert_eq!(v, TC_ACT_OK);
        used.push(verify4(&out).sport);
    }
    used.sort();
    assert_eq!(used, vec![40000, 40001]);
    let (v, _) = to_server(&mut dp, 17, &udp(1002, 53));
    assert_eq!(v, TC_ACT_SHOT, "a third flow has no port left");
    assert_eq!(counter(&dp, "snat-ports-exhausted"), 1);
    // Another destination port is another tuple: ports are free again.
    let (v, _) = to_server(&mut dp, 17, &udp(1002, 54));
    assert_eq!(v, TC_ACT_OK);
}

#[test]
fn echo_ids_are_translated() {
    let fs = Bpffs::new("nat-echo");
    let mut dp = datapath(&fs, (40000, 40009));
    let (v, out) = to_server(&mut dp, 1, &echo(true, 777));
    assert_eq!(v, TC_ACT_OK);
    let seen = verify4(&out);
    assert_eq!(seen.src, ip(UPLINK_ADDR));
    let (v, back) = from_server(&mut dp, 1, &echo(false, seen.sport));
    assert_eq!(v, TC_ACT_OK);
    let back = verify4(&back);
    assert_eq!((back.dst, back.sport), (ip(CONTAINER), 777));
}

#[test]
fn icmp_errors_quoting_a_masqueraded_packet_are_translated_inside_and_out() {
    let fs = Bpffs::new("nat-icmperr");
    let mut dp = datapath(&fs, (40000, 40009));
    let (_, out) = to_server(&mut dp, 17, &udp(5555, 9999));
    let nat_port = verify4(&out).sport;
    for (icmp_type, code) in [(3u8, 3u8), (3, 4), (11, 0)] {
        // The error quotes the IP header and 8 bytes of what we sent.
        let quoted = &out[14..14 + 28];
        let mut icmp = vec![icmp_type, code, 0, 0, 0, 0, 0x05, 0x00];
        icmp.extend_from_slice(quoted);
        let router = [192, 0, 2, 1];
        let (v, back) = run_classifier(&mut dp, UPLINK_IN, &frame(router, UPLINK_ADDR, 1, &icmp));
        assert_eq!(v, TC_ACT_OK);
        let outer = verify4(&back);
        assert_eq!(outer.dst, ip(CONTAINER), "outer destination");
        let inner = &back[14 + 20 + 8..];
        assert_eq!(csum(&inner[..20], 0), 0, "quoted IP header checksum");
        assert_eq!(&inner[12..16], &CONTAINER, "quoted source");
        assert_eq!(
            u16::from_be_bytes([inner[20], inner[21]]),
            5555,
            "quoted source port"
        );
        assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), 9999);
        assert_ne!(nat_port, 5555);
    }
}

#[test]
fn unsolicited_traffic_to_container_addresses_is_dropped() {
    let fs = Bpffs::new("nat-unsolicited");
    let mut dp = datapath(&fs, (40000, 40009));
    let (v, _) = run_classifier(
        &mut dp,
        UPLINK_IN,
        &frame(SERVER, CONTAINER, 6, &tcp(80, 33333, 0x02)),
    );
    assert_eq!(v, TC_ACT_SHOT);
    let (v, _) = run_classifier(
        &mut dp,
        UPLINK_IN,
        &frame(SERVER, CONTAINER, 1, &echo(true, 1)),
    );
    assert_eq!(v, TC_ACT_SHOT);
    // Traffic to the host itself is not netd's business.
    let (v, _) = from_server(&mut dp, 6, &tcp(80, 22, 0x02));
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(counter(&dp, "not-a-reply"), 2);
}

#[test]
fn published_ports_are_dnatted_and_replies_leave_as_the_host_port() {
    let fs = Bpffs::new("nat-dnat");
    let mut dp = datapath(&fs, (40000, 40009));
    let host: std::collections::HashSet<_> = [ip(UPLINK_ADDR)].into();
    dp.set_host_addrs(&host).unwrap();
    let client = [192, 0, 2, 50];
    for proto in [6u8, 17] {
        let l4 = |s, d| {
            if proto == 6 {
                tcp(s, d, 0x02)
            } else {
                udp(s, d)
            }
        };
        let p = if proto == 6 { Proto::Tcp } else { Proto::Udp };
        dp.publish(
            &PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                proto: p,
            },
            ip(CONTAINER),
        )
        .unwrap();
        let (v, out) = run_classifier(
            &mut dp,
            UPLINK_IN,
            &frame(client, UPLINK_ADDR, proto, &l4(50000, 8080)),
        );
        assert_eq!(v, TC_ACT_OK);
        let seen = verify4(&out);
        assert_eq!(
            (seen.src, seen.sport),
            (ip(client), 50000),
            "client address kept"
        );
        assert_eq!((seen.dst, seen.dport), (ip(CONTAINER), 80));
        let (v, reply) = run_classifier(
            &mut dp,
            UPLINK_OUT,
            &frame(CONTAINER, client, proto, &l4(80, 50000)),
        );
        assert_eq!(v, TC_ACT_OK);
        let reply = verify4(&reply);
        assert_eq!((reply.src, reply.sport), (ip(UPLINK_ADDR), 8080));
        assert_eq!((reply.dst, reply.dport), (ip(client), 50000));
    }
    // A port published on one host address does not answer on another.
    dp.publish(
        &PortMapping {
            host_ip: Some(ip([198, 51, 100, 8]).into()),
            host_port: 9090,
            container_port: 90,
            proto: Proto::Tcp,
        },
        ip(CONTAINER),
    )
    .unwrap();
    let (_, out) = run_classifier(
        &mut dp,
        UPLINK_IN,
        &frame(client, UPLINK_ADDR, 6, &tcp(50001, 9090, 0x02)),
    );
    assert_eq!(verify4(&out).dst, ip(UPLINK_ADDR), "not translated");
}

#[test]
fn sctp_published_port_translates_the_address_only() {
    let fs = Bpffs::new("nat-sctp");
    let mut dp = datapath(&fs, (40000, 40009));
    dp.set_host_addrs(&[ip(UPLINK_ADDR)].into()).unwrap();
    dp.publish(
        &PortMapping {
            host_ip: None,
            host_port: 3868,
            container_port: 3868,
            proto: Proto::Sctp,
        },
        ip(CONTAINER),
    )
    .unwrap();
    // SCTP common header: ports, verification tag, CRC32c (not over IP).
    let mut sctp = vec![0u8; 12];
    sctp[0..2].copy_from_slice(&40123u16.to_be_bytes());
    sctp[2..4].copy_from_slice(&3868u16.to_be_bytes());
    sctp[8..12].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let client = [192, 0, 2, 50];
    let input = frame(client, UPLINK_ADDR, 132, &sctp);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &input);
    assert_eq!(v, TC_ACT_OK);
    let seen = verify4(&out);
    assert_eq!((seen.dst, seen.dport), (ip(CONTAINER), 3868));
    assert_eq!(
        &out[34..46],
        &input[34..46],
        "SCTP header and CRC untouched"
    );
    let reply = frame(
        CONTAINER,
        client,
        132,
        &[&sctp[2..4], &sctp[0..2], &sctp[4..]].concat(),
    );
    let (_, back) = run_classifier(&mut dp, UPLINK_OUT, &reply);
    let back = verify4(&back);
    assert_eq!((back.src, back.sport), (ip(UPLINK_ADDR), 3868));
}

#[test]
fn xdp_prefilter_drops_unsolicited_and_passes_replies() {
    let fs = Bpffs::new("nat-xdp");
    let mut dp = datapath(&fs, (40000, 40009));
    let xdp = |dp: &mut Datapath, f: &[u8]| run_prefilter(dp, f).0;
    // Unsolicited traffic to a container address: dropped early.
    assert_eq!(
        xdp(&mut dp, &frame(SERVER, CONTAINER, 6, &tcp(80, 33333, 0x02))),
        XDP_DROP
    );
    assert_eq!(
        xdp(&mut dp, &frame(SERVER, CONTAINER, 17, &udp(53, 33333))),
        XDP_DROP
    );
    assert_eq!(
        xdp(&mut dp, &frame(SERVER, CONTAINER, 1, &echo(true, 9))),
        XDP_DROP
    );
    // To the host: not the prefilter's business.
    assert_eq!(
        xdp(&mut dp, &frame(SERVER, UPLINK_ADDR, 6, &tcp(80, 22, 0x02))),
        XDP_PASS
    );
    // A reply to a routed (masquerade off) flow comes to the container's
    // own address: it passes once the flow went out.
    network(&mut dp, 2, "10.8.0.0/24", [10, 8, 0, 1], NET_F_ICC);
    let inside = [10, 8, 0, 2];
    assert_eq!(
        xdp(&mut dp, &frame(SERVER, inside, 17, &udp(53, 4444))),
        XDP_DROP
    );
    let (v, out) = run_classifier(
        &mut dp,
        UPLINK_OUT,
        &frame(inside, SERVER, 17, &udp(4444, 53)),
    );
    assert_eq!(
        (v, verify4(&out).src),
        (TC_ACT_OK, ip(inside)),
        "routed: source kept"
    );
    assert_eq!(
        xdp(&mut dp, &frame(SERVER, inside, 17, &udp(53, 4444))),
        XDP_PASS
    );
    assert_eq!(counter(&dp, "not-a-reply"), 4);
}

#[test]
fn a_closed_tcp_flow_gives_its_port_to_a_new_connection() {
    let fs = Bpffs::new("nat-reuse");
    let mut dp = datapath(&fs, (40000, 40000));
    let (v, out) = to_server(&mut dp, 6, &tcp(1111, 80, TCP_SYN));
    assert_eq!((v, verify4(&out).sport), (TC_ACT_OK, 40000));
    // The only port is taken by a live flow: a second connection is refused.
    let (v, _) = to_server(&mut dp, 6, &tcp(2222, 80, TCP_SYN));
    assert_eq!(v, TC_ACT_SHOT);
    // Not for a packet that is not a new connection either.
    let (v, _) = to_server(&mut dp, 6, &tcp(2222, 80, TCP_ACK));
    assert_eq!(v, TC_ACT_SHOT);
    // The server resets the first flow: its port may be reused at once.
    let (v, _) = from_server(&mut dp, 6, &tcp(80, 40000, TCP_RST | TCP_ACK));
    assert_eq!(v, TC_ACT_OK);
    let (v, out) = to_server(&mut dp, 6, &tcp(2222, 80, TCP_SYN));
    assert_eq!((v, verify4(&out).sport), (TC_ACT_OK, 40000));
    // Replies now belong to the new flow.
    let (_, back) = from_server(&mut dp, 6, &tcp(80, 40000, TCP_SYN | TCP_ACK));
    assert_eq!(verify4(&back).dport, 2222);
}

/// A UDP IPv4 fragment with its header checksum; `frag` is the
/// flags+offset field, `body` what follows the IP header.
fn fragment(src: [u8; 4], dst: [u8; 4], id: u16, frag: u16, body: &[u8]) -> Vec<u8> {
    Pkt {
        id,
        frag,
        l4_checksum: false,
        ..Pkt::ipv4(src, dst, 17, body.to_vec())
    }
    .bytes()
}

#[test]
fn later_fragments_of_a_reply_follow_their_first() {
    let fs = Bpffs::new("nat-frags");
    let mut dp = datapath(&fs, (40000, 40009));
    let (_, out) = to_server(&mut dp, 17, &udp(5353, 53));
    let nat_port = verify4(&out).sport;
    // A 2,000-byte reply in two fragments.
    let mut first = vec![0u8; 8 + 1472];
    first[0..2].copy_from_slice(&53u16.to_be_bytes());
    first[2..4].copy_from_slice(&nat_port.to_be_bytes());
    first[4..6].copy_from_slice(&2000u16.to_be_bytes());
    let (v, out1) = run_classifier(
        &mut dp,
        UPLINK_IN,
        &fragment(SERVER, UPLINK_ADDR, 0x4242, 0x2000, &first),
    );
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(csum(&out1[14..34], 0), 0);
    assert_eq!(&out1[30..34], &CONTAINER);
    assert_eq!(u16::from_be_bytes([out1[36], out1[37]]), 5353);
    let (v, out2) = run_classifier(
        &mut dp,
        UPLINK_IN,
        &fragment(SERVER, UPLINK_ADDR, 0x4242, 185, &[0xab; 520]),
    );
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(
        csum(&out2[14..34], 0),
        0,
        "IP checksum of the later fragment"
    );
    assert_eq!(
        &out2[30..34],
        &CONTAINER,
        "later fragment follows its first"
    );
    assert_eq!(&out2[34..], &[0xab; 520][..], "payload untouched");
    // A fragment of another datagram is left to the host.
    let (v, out3) = run_classifier(
        &mut dp,
        UPLINK_IN,
        &fragment(SERVER, UPLINK_ADDR, 0x4343, 185, &[0xcd; 64]),
    );
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(&out3[30..34], &UPLINK_ADDR);
    // ... and one addressed to a container without a translated first is dropped.
    let (v, _) = run_classifier(
        &mut dp,
        UPLINK_IN,
        &fragment(SERVER, CONTAINER, 0x4444, 185, &[0xcd; 64]),
    );
    assert_eq!(v, TC_ACT_SHOT);
}

/// Published UDP 8053 -> CONTAINER:53 with CONTAINER's endpoint on `lo`
/// (what eBPF host routing delivers to), its network `net_flags`.
fn published_with_endpoint(fs: &Bpffs, net_flags: u32) -> Datapath {
    let mut dp = datapath(fs, (40000, 40009));
    network(&mut dp, 1, "10.7.0.0/24", [10, 7, 0, 1], net_flags);
    dp.set_endpoint(LO_IFINDEX, endpoint(CONTAINER, 1, net_flags, [10, 7, 0, 1]))
        .unwrap();
    dp.set_host_addrs(&[ip(UPLINK_ADDR), ip(HOST_B)].into())
        .unwrap();
    let mapping = PortMapping {
        host_ip: None,
        host_port: 8053,
        container_port: 53,
        proto: Proto::Udp,
    };
    dp.publish(&mapping, ip(CONTAINER)).unwrap();
    dp
}

/// A second host address (no uplink's): a published port's replies leave
/// as it, not as the uplink's address.
const HOST_B: [u8; 4] = [198, 51, 100, 8];

/// The first fragment of a 2,000-byte UDP datagram `sport` -> `dport`.
fn first_fragment(src: [u8; 4], dst: [u8; 4], id: u16, (sport, dport): (u16, u16)) -> Vec<u8> {
    let mut body = vec![0x5a; 8 + 512];
    body[0..2].copy_from_slice(&sport.to_be_bytes());
    body[2..4].copy_from_slice(&dport.to_be_bytes());
    body[4..6].copy_from_slice(&2000u16.to_be_bytes());
    fragment(src, dst, id, 0x2000, &body)
}

/// Asserts `out` is `sent` delivered into CONTAINER's netns (redirect to
/// its veth peer, its MAC from the gateway's, TTL one less) with `dst` as
/// destination, its payload untouched.
fn assert_delivered(v: u32, out: &[u8], sent: &[u8], dst: [u8; 4], what: &str) {
    assert_eq!(v, TC_ACT_REDIRECT, "{what}: into the container");
    assert_eq!(
        &out[0..6],
        &mac_for_addr(CONTAINER),
        "{what}: container MAC"
    );
    assert_eq!(
        &out[6..12],
        &mac_for_addr([10, 7, 0, 1]),
        "{what}: gateway MAC"
    );
    assert_eq!(out[22], sent[22] - 1, "{what}: TTL");
    assert_eq!(csum(&out[14..34], 0), 0, "{what}: IP checksum");
    assert_eq!(&out[26..30], &sent[26..30], "{what}: client address kept");
    assert_eq!(&out[30..34], &dst, "{what}: destination");
    assert_eq!(&out[42..], &sent[42..], "{what}: data");
}

#[test]
fn with_ebpf_host_routing_fragments_go_into_the_container() {
    let fs = Bpffs::new("nat-frag-peer");
    let mut dp = published_with_endpoint(&fs, NET_F_ICC | NET_F_MASQUERADE);
    let client = [192, 0, 2, 50];
    let peer_routed = counter(&dp, "peer-routed");
    // To the published port: the first fragment by its ports, the later
    // one after it, both into the container as unfragmented packets go.
    let first = first_fragment(client, HOST_B, 0x5151, (50000, 8053));
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &first);
    assert_delivered(v, &out, &first, CONTAINER, "first fragment");
    assert_eq!(u16::from_be_bytes([out[36], out[37]]), 53, "port");
    let later = fragment(client, HOST_B, 0x5151, 65, &[0xab; 64]);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &later);
    assert_delivered(v, &out, &later, CONTAINER, "later fragment");
    assert_eq!(&out[34..], &later[34..], "later fragment's data");
    // One that overtook its first (none seen): not translated, the host's.
    let stray = fragment(client, HOST_B, 0x5252, 65, &[0xab; 64]);
    assert_eq!(
        run_classifier(&mut dp, UPLINK_IN, &stray),
        (TC_ACT_OK, stray.clone()),
        "later fragment before its first"
    );
    assert_eq!(counter(&dp, "peer-routed") - peer_routed, 2);
    assert_eq!(counter(&dp, "fragment"), 0, "no fragment fallback");

    // The container's fragmented reply leaves as the published address
    // (HOST_B, not the uplink's), its later fragment too.
    let reply = first_fragment(CONTAINER, client, 0x6161, (53, 50000));
    let (v, out) = run_classifier(&mut dp, UPLINK_OUT, &reply);
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(csum(&out[14..34], 0), 0, "reply: IP checksum");
    assert_eq!(&out[26..30], &HOST_B, "reply: published address");
    assert_eq!(u16::from_be_bytes([out[34], out[35]]), 8053, "reply: port");
    let later = fragment(CONTAINER, client, 0x6161, 65, &[0xcd; 64]);
    let (v, out) = run_classifier(&mut dp, UPLINK_OUT, &later);
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(
        csum(&out[14..34], 0),
        0,
        "later reply fragment: IP checksum"
    );
    assert_eq!(&out[26..30], &HOST_B, "later reply fragment: as its first");
    assert_eq!(&out[34..], &later[34..], "later reply fragment: data");
    // Another datagram's later fragment (its first not seen) is
    // masqueraded as the network's packets without ports are.
    let other = fragment(CONTAINER, client, 0x6262, 65, &[0xcd; 64]);
    let (_, out) = run_classifier(&mut dp, UPLINK_OUT, &other);
    assert_eq!(&out[26..30], &UPLINK_ADDR, "masqueraded");
}

#[test]
fn with_ebpf_host_routing_fragmented_replies_of_routed_flows_go_in() {
    let fs = Bpffs::new("nat-frag-routed");
    let mut dp = published_with_endpoint(&fs, NET_F_ICC);
    let (v, _) = to_server(&mut dp, 17, &udp(5353, 53));
    assert_eq!(v, TC_ACT_OK, "routed flow out");
    let first = first_fragment(SERVER, CONTAINER, 0x7171, (53, 5353));
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &first);
    assert_delivered(v, &out, &first, CONTAINER, "first fragment of the reply");
    let later = fragment(SERVER, CONTAINER, 0x7171, 65, &[0xab; 64]);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &later);
    assert_delivered(v, &out, &later, CONTAINER, "later fragment of the reply");
    // A later fragment whose first was not let in is no reply.
    let before = counter(&dp, "not-a-reply");
    let stray = fragment(SERVER, CONTAINER, 0x7272, 65, &[0xab; 64]);
    assert_eq!(run_classifier(&mut dp, UPLINK_IN, &stray).0, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "not-a-reply"), before + 1);
    // The published port's fragmented reply leaves as the published
    // address although the network does not masquerade.
    let client = [192, 0, 2, 60];
    let (v, _) = run_classifier(
        &mut dp,
        UPLINK_IN,
        &frame(client, UPLINK_ADDR, 17, &udp(50001, 8053)),
    );
    assert_eq!(v, TC_ACT_REDIRECT, "request in");
    let reply = first_fragment(CONTAINER, client, 0x7373, (53, 50001));
    let (_, out) = run_classifier(&mut dp, UPLINK_OUT, &reply);
    assert_eq!(&out[26..30], &UPLINK_ADDR, "reply: published address");
    let later = fragment(CONTAINER, client, 0x7373, 65, &[0xcd; 64]);
    let (_, out) = run_classifier(&mut dp, UPLINK_OUT, &later);
    assert_eq!(
        &out[26..30],
        &UPLINK_ADDR,
        "later reply fragment: as its first"
    );
    assert_eq!(
        csum(&out[14..34], 0),
        0,
        "later reply fragment: IP checksum"
    );
}

#[test]
fn replies_for_local_containers_skip_the_host_stack() {
    let fs = Bpffs::new("nat-peer");
    let mut dp = datapath(&fs, (40000, 40009));
    let ep = netd_common::Endpoint {
        // A MAC the runtime chose (CNI `MAC=`), not the derived one.
        mac: [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02],
        ..endpoint(CONTAINER, 1, NET_F_ICC | NET_F_MASQUERADE, [10, 7, 0, 1])
    };
    dp.set_endpoint(LO_IFINDEX, ep).unwrap();
    let (_, out) = to_server(&mut dp, 6, &tcp(3333, 443, 0x02));
    let nat_port = verify4(&out).sport;
    let reply = frame(SERVER, UPLINK_ADDR, 6, &tcp(443, nat_port, 0x12));
    let (v, back) = run_classifier(&mut dp, UPLINK_IN, &reply);
    assert_eq!(
        v, TC_ACT_REDIRECT,
        "delivered straight to the container's veth peer"
    );
    let seen = verify4(&back);
    assert_eq!((seen.dst, seen.dport), (ip(CONTAINER), 3333));
    assert_eq!(back[22], reply[22] - 1, "TTL decremented as routing would");
    assert_eq!(
        &back[0..6],
        &[0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02],
        "container MAC"
    );
    assert_eq!(&back[6..12], &[0x02, 0x42, 10, 7, 0, 1], "gateway MAC");
    // Once the endpoint is gone, the stack routes it again.
    dp.remove_endpoint_entry(LO_IFINDEX).unwrap();
    let (v, _) = run_classifier(&mut dp, UPLINK_IN, &reply);
    assert_eq!(v, TC_ACT_OK);
}

/// Another network's container, a client of CONTAINER's published port.
const OTHER: [u8; 4] = [10, 8, 0, 2];

/// `out`, a fragment sent by a container and redirected to a container's
/// veth, goes `src` -> `dst` with the MACs of `dst`'s side (`to` behind
/// `gateway`), its IP checksum right and its data (from byte 42: past the
/// UDP header of a first fragment) untouched.
fn assert_redirected(v: u32, out: &[u8], sent: &[u8], addrs: [[u8; 4]; 4], what: &str) {
    let [src, dst, to, gateway] = addrs;
    assert_eq!(v, TC_ACT_REDIRECT, "{what}: redirected");
    assert_eq!(&out[0..6], &mac_for_addr(to), "{what}: receiver's MAC");
    assert_eq!(&out[6..12], &mac_for_addr(gateway), "{what}: gateway MAC");
    assert_eq!(csum(&out[14..34], 0), 0, "{what}: IP checksum");
    assert_eq!(&out[26..30], &src, "{what}: source");
    assert_eq!(&out[30..34], &dst, "{what}: destination");
    assert_eq!(&out[42..], &sent[42..], "{what}: data");
}

#[test]
fn fragments_between_containers_and_a_published_port_follow_their_first() {
    let fs = Bpffs::new("nat-frag-local");
    let masq = NET_F_ICC | NET_F_MASQUERADE;
    let mut dp = published_with_endpoint(&fs, masq);
    network(&mut dp, 2, "10.8.0.0/24", [10, 8, 0, 1], masq);
    // OTHER sends on lo; CONTAINER stays found on lo by its address.
    dp.set_endpoint(LO_IFINDEX, endpoint(OTHER, 2, masq, [10, 8, 0, 1]))
        .unwrap();
    let gw = [10, 7, 0, 1];
    // OTHER -> HOST_B:8053: both fragments into CONTAINER, from OTHER.
    let first = first_fragment(OTHER, HOST_B, 0x8181, (50000, 8053));
    let (v, out) = run_classifier(&mut dp, FROM_CONTAINER, &first);
    assert_delivered(v, &out, &first, CONTAINER, "request's first fragment");
    assert_eq!(u16::from_be_bytes([out[36], out[37]]), 53, "port");
    let later = fragment(OTHER, HOST_B, 0x8181, 65, &[0xab; 64]);
    let (v, out) = run_classifier(&mut dp, FROM_CONTAINER, &later);
    assert_delivered(v, &out, &later, CONTAINER, "request's later fragment");
    assert_eq!(&out[34..], &later[34..], "request's later fragment: data");
    // One whose first was not seen is not translated.
    let stray = fragment(OTHER, HOST_B, 0x8282, 65, &[0xab; 64]);
    let (_, out) = run_classifier(&mut dp, FROM_CONTAINER, &stray);
    assert_eq!(&out[30..34], &HOST_B, "stray later fragment untranslated");

    // CONTAINER's fragmented reply reaches OTHER's veth as HOST_B:8053.
    dp.set_endpoint(LO_IFINDEX, endpoint(CONTAINER, 1, masq, gw))
        .unwrap();
    let reply = first_fragment(CONTAINER, OTHER, 0x9191, (53, 50000));
    let (v, mut out) = run_classifier(&mut dp, FROM_CONTAINER, &reply);
    let addrs = [HOST_B, OTHER, OTHER, [10, 8, 0, 1]];
    // (Its MACs are the endpoint's on the veth the request came in by,
    // lo: CONTAINER's by now.)
    out[0..6].copy_from_slice(&mac_for_addr(OTHER));
    out[6..12].copy_from_slice(&mac_for_addr([10, 8, 0, 1]));
    assert_redirected(v, &out, &reply, addrs, "reply's first fragment");
    assert_eq!(u16::from_be_bytes([out[34], out[35]]), 8053, "reply: port");
    let later = fragment(CONTAINER, OTHER, 0x9191, 65, &[0xcd; 64]);
    let (v, out) = run_classifier(&mut dp, FROM_CONTAINER, &later);
    assert_redirected(v, &out, &later, addrs, "reply's later fragment");
    assert_eq!(&out[34..], &later[34..], "reply's later fragment: data");

    // Hairpin: CONTAINER -> UPLINK_ADDR:8053 comes back from its gateway,
    // the reply (to the gateway) back as UPLINK_ADDR:8053.
    let first = first_fragment(CONTAINER, UPLINK_ADDR, 0xa1a1, (41000, 8053));
    let (v, out) = run_classifier(&mut dp, FROM_CONTAINER, &first);
    let addrs = [gw, CONTAINER, CONTAINER, gw];
    assert_redirected(v, &out, &first, addrs, "hairpin's first fragment");
    assert_eq!(u16::from_be_bytes([out[36], out[37]]), 53, "hairpin: port");
    let later = fragment(CONTAINER, UPLINK_ADDR, 0xa1a1, 65, &[0xab; 64]);
    let (v, out) = run_classifier(&mut dp, FROM_CONTAINER, &later);
    assert_redirected(v, &out, &later, addrs, "hairpin's later fragment");
    let reply = first_fragment(CONTAINER, gw, 0xb1b1, (53, 41000));
    let (v, out) = run_classifier(&mut dp, FROM_CONTAINER, &reply);
    let addrs = [UPLINK_ADDR, CONTAINER, CONTAINER, gw];
    assert_redirected(v, &out, &reply, addrs, "hairpin reply's first fragment");
    assert_eq!(
        u16::from_be_bytes([out[34], out[35]]),
        8053,
        "hairpin reply: port"
    );
    let later = fragment(CONTAINER, gw, 0xb1b1, 65, &[0xcd; 64]);
    let (v, out) = run_classifier(&mut dp, FROM_CONTAINER, &later);
    assert_redirected(v, &out, &later, addrs, "hairpin reply's later fragment");
    assert_eq!(counter(&dp, "fragment"), 0, "no fragment fallback");
}

#[test]
fn with_kernel_routing_fragments_to_a_published_port_enter_its_target() {
    let fs = Bpffs::new("nat-frag-kernel");
    let masq = NET_F_ICC | NET_F_MASQUERADE;
    let mut dp = published_with_endpoint(&fs, masq);
    dp.set_host_routing(HostRouting::Kernel).unwrap();
    network(&mut dp, 2, "10.8.0.0/24", [10, 8, 0, 1], masq);
    dp.set_endpoint(LO_IFINDEX, endpoint(OTHER, 2, masq, [10, 8, 0, 1]))
        .unwrap();
    // OTHER -> HOST_B:8053 in two fragments: both leave OTHER's veth for
    // CONTAINER (the stack forwards them), the later one after its first.
    let first = first_fragment(OTHER, HOST_B, 0xc1c1, (50000, 8053));
    let (v, into_first) = run_classifier(&mut dp, FROM_CONTAINER, &first);
    assert_eq!(v, TC_ACT_OK, "first fragment: to the stack");
    assert_eq!(&into_first[30..34], &CONTAINER, "first fragment: target");
    assert_eq!(
        csum(&into_first[14..34], 0),
        0,
        "first fragment: IP checksum"
    );
    let later = fragment(OTHER, HOST_B, 0xc1c1, 65, &[0xab; 64]);
    let (v, into_later) = run_classifier(&mut dp, FROM_CONTAINER, &later);
    assert_eq!(v, TC_ACT_OK, "later fragment: to the stack");
    assert_eq!(&into_later[30..34], &CONTAINER, "later fragment: target");
    assert_eq!(&into_later[34..], &later[34..], "later fragment: data");

    // At CONTAINER's veth both cross networks as the published flow's:
    // the first by its ports, the later one by its first's.
    dp.set_endpoint(LO_IFINDEX, endpoint(CONTAINER, 1, masq, [10, 7, 0, 1]))
        .unwrap();
    for (frame, what) in [(&into_first, "first"), (&into_later, "later")] {
        assert_verdict(
            &mut dp,
            TO_CONTAINER,
            frame,
            TC_ACT_OK,
            "network-isolation",
            &format!("{what} fragment into the target"),
        );
    }
    // Not a later fragment of another datagram (its first was not sent to
    // the published port), nor one from another container of OTHER's
    // network with the same id.
    for (src, id, what) in [
        (OTHER, 0xc2c2, "another datagram"),
        ([10, 8, 0, 3], 0xc1c1, "another sender"),
    ] {
        assert_verdict(
            &mut dp,
            TO_CONTAINER,
            &fragment(src, CONTAINER, id, 65, &[0xab; 64]),
            TC_ACT_SHOT,
            "network-isolation",
            &format!("later fragment of {what}"),
        );
    }
}
