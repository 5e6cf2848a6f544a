//! BPF_PROG_TEST_RUN tests of published ports over IPv6: a new flow from
//! the world to a published port at uplink_in gets the container's IPv6
//! address and port as destination (the client's kept), its next packets
//! too, and the reply leaves uplink_out as the host address and published
//! port; each frame compared byte for byte with one built from scratch
//! (so the TCP/UDP checksum is the one a sender would compute). A port
//! published on one host address is not translated on another; with eBPF
//! host routing the translated packet goes straight into the container
//! (redirect, hop limit decremented, the container's MACs). Needs root.
mod common;

use std::net::Ipv6Addr;

use common::{
    endpoint, endpoint6, load, network, network6,
    packet::{tcp, udp_with},
    packet6::Pkt6,
    run_classifier, Bpffs, LO_IFINDEX, TC_ACT_OK, TC_ACT_REDIRECT,
};
use netd::{
    datapath::{addr_key, Datapath, HostRouting, UPLINK_IN, UPLINK_OUT},
    ports::{PortMapping, Proto},
};
use netd_common::{
    proto::{IPPROTO_TCP as TCP, IPPROTO_UDP as UDP},
    Uplink, NET_F_ICC, NET_F_MASQUERADE, TCP_ACK, TCP_SYN,
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
/// HOST6 and HOST6_B as the host's IPv6 addresses.
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
    dp.set_host_addrs6(&[v6(HOST6), v6(HOST6_B)].into())
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
