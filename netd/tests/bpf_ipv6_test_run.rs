//! BPF_PROG_TEST_RUN tests of IPv6 in the programs: the parser
//! (extension header chains up to the bound, fragments, truncated
//! headers: each refused packet counted by its reason), the policy rows of
//! SPEC section 4 at the container veth, and at the uplink the drop of
//! what is no reply (TC and the XDP prefilter). Needs root.
mod common;

use std::{net::Ipv6Addr, path::Path};

use common::{csum, Bpffs};

use aya::programs::{TestRun, TestRunOptions};
use netd::datapath::{
    addr6_key, addr_key, Datapath, FROM_CONTAINER, TO_CONTAINER, UPLINK_IN, UPLINK_OUT,
};
use netd_common::{
    Endpoint, Endpoint6, NetworkInfo, NetworkInfo6, Uplink, NET_F_ICC, NET_F_INTERNAL,
    NET_F_MASQUERADE,
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const LO_IFINDEX: u32 = 1;

const OPEN: u32 = NET_F_ICC | NET_F_MASQUERADE;
const ME: &str = "fd00:a::2";
const PEER: &str = "fd00:a::3";
const GW: &str = "fd00:a::1";
const OTHER: &str = "fd00:b::2";
const OTHER_GW: &str = "fd00:b::1";
const WORLD: &str = "2001:db8::9";
const MY_MAC: [u8; 6] = [0x02, 0x42, 10, 1, 0, 2];
const PEER_MAC: [u8; 6] = [0x02, 0x42, 10, 1, 0, 3];
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 1, 0, 1];

const HOPOPTS: u8 = 0;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AH: u8 = 51;
const ICMPV6: u8 = 58;
const DSTOPTS: u8 = 60;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Container fd00:a::2 (and 10.1.0.2) on network 1 (`flags`), network 2
/// is fd00:b::/64; the loopback device is the endpoint's veth and uplink.
fn datapath(dir: &Path, flags: u32, with_ipv6: bool) -> Datapath {
    let mut dp = Datapath::load(dir, 1024).expect("load programs");
    for (id, v4, gw4, v6net, gw6, f) in [
        (1, "10.1.0.0/24", [10, 1, 0, 1], "fd00:a::/64", GW, flags),
        (
            2,
            "10.2.0.0/24",
            [10, 2, 0, 1],
            "fd00:b::/64",
            OTHER_GW,
            OPEN,
        ),
    ] {
        let info = NetworkInfo {
            net_id: id,
            gateway: addr_key(gw4.into()),
            flags: f,
            prefix_len: 24,
        };
        dp.upsert_network(v4.parse().unwrap(), info).unwrap();
        let info6 = NetworkInfo6 {
            net_id: id,
            flags: f,
            prefix_len: 64,
            _pad: 0,
            gateway: addr6_key(v6(gw6)),
        };
        dp.upsert_network6(v6net.parse().unwrap(), info6).unwrap();
    }
    let ep = Endpoint {
        ip: addr_key([10, 1, 0, 2].into()),
        net_id: 1,
        net_flags: flags,
        gateway: addr_key([10, 1, 0, 1].into()),
        mac: MY_MAC,
        _pad: [0; 2],
    };
    dp.set_endpoint(LO_IFINDEX, ep).unwrap();
    if with_ipv6 {
        let ep6 = Endpoint6 {
            ip: addr6_key(v6(ME)),
            gateway: addr6_key(v6(GW)),
            gateway_mac: GW_MAC,
            _pad: [0; 2],
        };
        dp.set_endpoint6(LO_IFINDEX, ep6).unwrap();
    }
    dp
}

/// An IPv6 packet under construction.
#[derive(Clone)]
struct Pkt {
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    /// Extension headers as (type, bytes with the next-header byte left 0).
    ext: Vec<(u8, Vec<u8>)>,
    proto: u8,
    l4: Vec<u8>,
    /// Added to the payload length field.
    payload_len_delta: i32,
    truncate_to: Option<usize>,
}

impl Pkt {
    fn new(src: &str, dst: &str, proto: u8, l4: Vec<u8>) -> Self {
        Pkt {
            eth_dst: PEER_MAC,
            eth_src: MY_MAC,
            src: v6(src),
            dst: v6(dst),
            hop_limit: 64,
            ext: Vec::new(),
            proto,
            l4,
            payload_len_delta: 0,
            truncate_to: None,
        }
    }

    fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&16u16.to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(&[0xab; 8]);
        Self::new(src, dst, UDP, l4)
    }

    fn icmp(src: &str, dst: &str, ty: u8, body: &[u8]) -> Self {
        let mut l4 = vec![ty, 0, 0, 0];
        l4.extend_from_slice(body);
        Self::new(src, dst, ICMPV6, l4)
    }

    fn echo(src: &str, dst: &str, request: bool, id: u16) -> Self {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 1, 0xcc, 0xcc, 0xcc, 0xcc]);
        Self::icmp(src, dst, if request { 128 } else { 129 }, &body)
    }

    /// An options-style extension header of `len8` 8-octet units.
    fn opts(mut self, ty: u8, len8: usize) -> Self {
        let mut h = vec![0u8; len8 * 8];
        h[1] = (len8 - 1) as u8;
        if len8 * 8 > 2 {
            // PadN over the rest.
            h[2] = 1;
            h[3] = (len8 * 8 - 4) as u8;
        }
        self.ext.push((ty, h));
        self
    }

    fn routing(mut self, segments_left: u8) -> Self {
        let mut h = vec![0u8; 24];
        h[1] = 2;
        h[2] = 0;
        h[3] = segments_left;
        self.ext.push((ROUTING, h));
        self
    }

    fn fragment(mut self, offset8: u16, more: bool, id: u32) -> Self {
        let mut h = vec![0u8; 8];
        let field = (offset8 << 3) | u16::from(more);
        h[2..4].copy_from_slice(&field.to_be_bytes());
        h[4..8].copy_from_slice(&id.to_be_bytes());
        self.ext.push((FRAGMENT, h));
        self
    }

    fn auth(mut self) -> Self {
        let mut h = vec![0u8; 16];
        h[1] = 2; // (2 + 2) * 4 = 16 bytes
        self.ext.push((AH, h));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.eth_dst);
        f.extend_from_slice(&self.eth_src);
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut payload = Vec::new();
        for (i, (_, h)) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(self.proto, |(t, _)| *t);
            let mut h = h.clone();
            h[0] = next;
            payload.extend_from_slice(&h);
        }
        let l4_at = payload.len();
        payload.extend_from_slice(&self.l4);
        let first = self.ext.first().map_or(self.proto, |(t, _)| *t);
        let plen = (payload.len() as i32 + self.payload_len_delta) as u16;
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&plen.to_be_bytes());
        h.extend_from_slice(&[first, self.hop_limit]);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        // Upper-layer checksum over the IPv6 pseudo-header.
        let l4_len = self.l4.len();
        if matches!(self.proto, UDP | TCP | ICMPV6) && l4_len >= 8 {
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&self.src.octets());
            pseudo.extend_from_slice(&self.dst.octets());
            pseudo.extend_from_slice(&(l4_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, self.proto]);
            pseudo.extend_from_slice(&payload[l4_at..]);
            let at = l4_at
                + if self.proto == UDP {
                    6
                } else if self.proto == TCP {
                    16
                } else {
                    2
                };
            let c = csum(&pseudo, 0);
            payload[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        f.extend_from_slice(&h);
        f.extend_from_slice(&payload);
        if let Some(n) = self.truncate_to {
            f.truncate(n);
        }
        f
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

fn xdp(dp: &mut Datapath, frame: &[u8]) -> u32 {
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    };
    dp.prefilter_program()
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
        .unwrap_or_else(|| panic!("no drop reason {reason}"))
        .packets
}

/// Runs `prog` on `p`, asserts the verdict and, for a drop, that exactly
/// one more packet was counted under `reason`.
fn expect(dp: &mut Datapath, prog: &str, p: &Pkt, verdict: u32, reason: &str, what: &str) {
    let before = drops(dp, reason);
    assert_eq!(run(dp, prog, &p.bytes()), verdict, "{what}");
    let counted = drops(dp, reason) - before;
    let want = u64::from(verdict == TC_ACT_SHOT);
    assert_eq!(counted, want, "{what}: {reason} counted {counted}");
}

#[test]
fn ipv6_rows_at_the_container_veth() {
    let fs = Bpffs::new("v6-rows");
    let mut dp = datapath(&fs.0, OPEN, true);
    let iso = "network-isolation";
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, PEER, 1, 2),
        TC_ACT_OK,
        iso,
        "same network",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, GW, 1, 2),
        TC_ACT_OK,
        iso,
        "gateway",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, OTHER_GW, 1, 2),
        TC_ACT_OK,
        iso,
        "other network's gateway (host)",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, WORLD, 1, 2),
        TC_ACT_OK,
        iso,
        "world",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, OTHER, 1, 2),
        TC_ACT_SHOT,
        iso,
        "other network",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::echo(ME, OTHER, true, 7),
        TC_ACT_SHOT,
        iso,
        "other network, ICMPv6",
    );
    expect(
        &mut dp,
        TO_CONTAINER,
        &Pkt::udp(OTHER, ME, 1, 2),
        TC_ACT_SHOT,
        iso,
        "from another network",
    );
    expect(
        &mut dp,
        TO_CONTAINER,
        &Pkt::udp(PEER, ME, 1, 2),
        TC_ACT_OK,
        iso,
        "from the same network",
    );
    expect(
        &mut dp,
        TO_CONTAINER,
        &Pkt::udp(WORLD, ME, 1, 2),
        TC_ACT_OK,
        iso,
        "from beyond the host",
    );
    let spoof = "spoofed-source";
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp("fd00:a::9", WORLD, 1, 2),
        TC_ACT_SHOT,
        spoof,
        "other source of the subnet",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(OTHER, PEER, 1, 2),
        TC_ACT_SHOT,
        spoof,
        "another network's source",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp("fe80::1", WORLD, 1, 2),
        TC_ACT_SHOT,
        spoof,
        "link-local source off the link",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp("::", PEER, 1, 2),
        TC_ACT_SHOT,
        spoof,
        "unspecified source, unicast",
    );
    // Router advertisements and redirects from a container.
    let mut ra = Pkt::icmp(
        "fe80::42:aff:fe01:2",
        "ff02::1",
        134,
        &[64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    ra.hop_limit = 255;
    expect(
        &mut dp,
        FROM_CONTAINER,
        &ra,
        TC_ACT_SHOT,
        "nd-router-message",
        "router advertisement",
    );
}

/// Neighbour solicitation for `target` from `src` to its solicited-node
/// group (hop limit 255 as RFC 4861 requires).
fn ns(src: &str, target: &str) -> Pkt {
    let t = v6(target).octets();
    let group = format!("ff02::1:ff{:02x}:{:02x}{:02x}", t[13], t[14], t[15]);
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&t);
    let mut p = Pkt::icmp(src, &group, 135, &body);
    p.hop_limit = 255;
    p.eth_dst = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    p
}

#[test]
fn icc_off_keeps_the_gateway_and_neighbour_discovery() {
    let fs = Bpffs::new("v6-icc");
    let mut dp = datapath(&fs.0, NET_F_MASQUERADE, true);
    let icc = "icc-disabled";
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, PEER, 1, 2),
        TC_ACT_SHOT,
        icc,
        "peer",
    );
    expect(
        &mut dp,
        TO_CONTAINER,
        &Pkt::udp(PEER, ME, 1, 2),
        TC_ACT_SHOT,
        icc,
        "from the peer",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, GW, 1, 2),
        TC_ACT_OK,
        icc,
        "gateway",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &ns("fe80::42:aff:fe01:2", PEER),
        TC_ACT_OK,
        icc,
        "neighbour solicitation, link-local source",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &ns(ME, GW),
        TC_ACT_OK,
        icc,
        "neighbour solicitation for the gateway",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &ns("::", ME),
        TC_ACT_OK,
        icc,
        "duplicate address detection",
    );
    let mut forged = ns("fe80::42:aff:fe01:2", PEER);
    forged.hop_limit = 64;
    expect(
        &mut dp,
        FROM_CONTAINER,
        &forged,
        TC_ACT_SHOT,
        icc,
        "ICMPv6 135 with hop limit 64 is no ND",
    );
    let mut ll = Pkt::udp("fe80::42:aff:fe01:2", "fe80::42:aff:fe01:3", 1, 2);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &ll,
        TC_ACT_SHOT,
        icc,
        "link-local to a peer",
    );
    ll.dst = v6("fe80::42:aff:fe01:1");
    ll.eth_dst = GW_MAC;
    expect(
        &mut dp,
        FROM_CONTAINER,
        &ll,
        TC_ACT_OK,
        icc,
        "link-local to the bridge",
    );
    ll.dst = v6("fe80::42:aff:fe01:3");
    expect(
        &mut dp,
        FROM_CONTAINER,
        &ll,
        TC_ACT_SHOT,
        icc,
        "a peer's link-local sent to the bridge's MAC",
    );
    let mut from_host = Pkt::icmp(
        "fe80::42:aff:fe01:1",
        "ff02::1",
        134,
        &[64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    from_host.eth_src = GW_MAC;
    from_host.hop_limit = 255;
    expect(
        &mut dp,
        TO_CONTAINER,
        &from_host,
        TC_ACT_OK,
        icc,
        "the host's router advertisement",
    );
    let mut mcast = Pkt::udp(ME, "ff02::fb", 5353, 5353);
    mcast.eth_dst = [0x33, 0x33, 0, 0, 0, 0xfb];
    expect(
        &mut dp,
        FROM_CONTAINER,
        &mcast,
        TC_ACT_SHOT,
        icc,
        "multicast",
    );
}

#[test]
fn internal_network_stays_in_its_subnet() {
    let fs = Bpffs::new("v6-internal");
    let mut dp = datapath(&fs.0, NET_F_INTERNAL | NET_F_ICC, true);
    let int = "internal-network";
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, WORLD, 1, 2),
        TC_ACT_SHOT,
        int,
        "world",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, OTHER_GW, 1, 2),
        TC_ACT_SHOT,
        int,
        "other network's gateway",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, GW, 1, 2),
        TC_ACT_OK,
        int,
        "own gateway",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, PEER, 1, 2),
        TC_ACT_OK,
        int,
        "same network",
    );
    expect(
        &mut dp,
        TO_CONTAINER,
        &Pkt::udp(WORLD, ME, 1, 2),
        TC_ACT_SHOT,
        int,
        "from the world",
    );
    expect(
        &mut dp,
        UPLINK_OUT,
        &Pkt::udp(ME, WORLD, 1, 2),
        TC_ACT_OK,
        int,
        "not an uplink yet",
    );
    dp.set_uplink_entry(LO_IFINDEX, uplink()).unwrap();
    expect(
        &mut dp,
        UPLINK_OUT,
        &Pkt::udp(ME, WORLD, 1, 2),
        TC_ACT_SHOT,
        int,
        "leaving by the uplink",
    );
}

/// The issue 13 leak: an endpoint on a network without IPv6 (no
/// `ENDPOINT6` entry) sends IPv6 to another network's address.
#[test]
fn without_ipv6_only_link_local_traffic_passes() {
    let fs = Bpffs::new("v6-none");
    let mut dp = datapath(&fs.0, OPEN, false);
    let no = "ipv6-not-enabled";
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, OTHER, 1, 2),
        TC_ACT_SHOT,
        no,
        "to another network",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::echo(ME, OTHER, true, 1),
        TC_ACT_SHOT,
        no,
        "ping to another network",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, WORLD, 1, 2),
        TC_ACT_SHOT,
        no,
        "to the world",
    );
    expect(
        &mut dp,
        TO_CONTAINER,
        &Pkt::udp(OTHER, ME, 1, 2),
        TC_ACT_SHOT,
        no,
        "from another network",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp("fe80::1", "fe80::2", 1, 2),
        TC_ACT_OK,
        no,
        "link-local",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &ns("fe80::1", "fe80::2"),
        TC_ACT_OK,
        no,
        "neighbour discovery",
    );
    // Given an address, the same endpoint is judged by the network rules.
    let ep6 = Endpoint6 {
        ip: addr6_key(v6(ME)),
        gateway: addr6_key(v6(GW)),
        gateway_mac: GW_MAC,
        _pad: [0; 2],
    };
    dp.set_endpoint6(LO_IFINDEX, ep6).unwrap();
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, OTHER, 1, 2),
        TC_ACT_SHOT,
        "network-isolation",
        "isolated once it has IPv6",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, WORLD, 1, 2),
        TC_ACT_OK,
        no,
        "world once it has IPv6",
    );
    dp.remove_endpoint6(LO_IFINDEX).unwrap();
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, WORLD, 1, 2),
        TC_ACT_SHOT,
        no,
        "address removed",
    );
}

#[test]
fn extension_header_chains_are_followed_up_to_the_bound() {
    let fs = Bpffs::new("v6-ext");
    let mut dp = datapath(&fs.0, OPEN, true);
    let ext = "ipv6-ext-headers";
    let mut p = Pkt::udp(ME, PEER, 1, 2).opts(HOPOPTS, 1);
    for _ in 0..7 {
        p = p.opts(DSTOPTS, 2);
    }
    expect(
        &mut dp,
        FROM_CONTAINER,
        &p,
        TC_ACT_OK,
        ext,
        "8 extension headers",
    );
    let nine = p.clone().opts(DSTOPTS, 1);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &nine,
        TC_ACT_SHOT,
        ext,
        "9 extension headers",
    );
    let mut cross = p.clone();
    cross.dst = v6(OTHER);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &cross,
        TC_ACT_SHOT,
        "network-isolation",
        "a chain does not hide the destination",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, PEER, 1, 2).routing(0),
        TC_ACT_OK,
        ext,
        "routing header, no segments left",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, GW, 1, 2).routing(1),
        TC_ACT_SHOT,
        ext,
        "routing header with segments left",
    );
    expect(
        &mut dp,
        FROM_CONTAINER,
        &Pkt::udp(ME, PEER, 1, 2).auth().opts(DSTOPTS, 1),
        TC_ACT_OK,
        ext,
        "AH then options",
    );
    // MLD reports carry a hop-by-hop router alert; with icc off they pass
    // as link control only when the chain is read to the ICMPv6 type.
    let mut dp = datapath(&fs.0, NET_F_MASQUERADE, true);
    let mut mld = Pkt::icmp("fe80::42:aff:fe01:2", "ff02::16", 143, &[0, 0, 0, 0]).opts(HOPOPTS, 1);
    mld.hop_limit = 1;
    expect(
        &mut dp,
        FROM_CONTAINER,
        &mld,
        TC_ACT_OK,
        "icc-disabled",
        "MLD report behind hop-by-hop",
    );
}

#[test]
fn fragments_are_judged_by_their_addresses() {
    let fs = Bpffs::new("v6-frag");
    let mut dp = datapath(&fs.0, OPEN, true);
    let ext = "ipv6-ext-headers";
    let first = Pkt::udp(ME, PEER, 1, 2).fragment(0, true, 7);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &first,
        TC_ACT_OK,
        ext,
        "first fragment",
    );
    let atomic = Pkt::udp(ME, PEER, 1, 2).fragment(0, false, 8);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &atomic,
        TC_ACT_OK,
        ext,
        "atomic fragment",
    );
    let later = Pkt::new(ME, PEER, UDP, vec![0xab; 16]).fragment(2, false, 7);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &later,
        TC_ACT_OK,
        ext,
        "later fragment",
    );
    let mut later_cross = later.clone();
    later_cross.dst = v6(OTHER);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &later_cross,
        TC_ACT_SHOT,
        "network-isolation",
        "later fragment to another network",
    );
    // RFC 7112: the whole chain, upper-layer header included, in the first.
    let headless = Pkt::new(ME, PEER, UDP, vec![0xab; 4]).fragment(0, true, 9);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &headless,
        TC_ACT_SHOT,
        ext,
        "first fragment without its UDP header",
    );
    let mut chain_cut = Pkt::new(ME, PEER, UDP, vec![])
        .fragment(0, true, 10)
        .opts(DSTOPTS, 4);
    chain_cut.ext.last_mut().unwrap().1.truncate(8);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &chain_cut,
        TC_ACT_SHOT,
        ext,
        "first fragment ending inside an options header",
    );
}

#[test]
fn truncated_packets_are_dropped_and_counted() {
    let fs = Bpffs::new("v6-trunc");
    let mut dp = datapath(&fs.0, OPEN, true);
    let tr = "truncated";
    let mut long = Pkt::udp(ME, PEER, 1, 2);
    long.payload_len_delta = 8;
    expect(
        &mut dp,
        FROM_CONTAINER,
        &long,
        TC_ACT_SHOT,
        tr,
        "payload length past the frame",
    );
    let mut cut_udp = Pkt::udp(ME, PEER, 1, 2);
    cut_udp.l4.truncate(6);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &cut_udp,
        TC_ACT_SHOT,
        tr,
        "UDP header cut short",
    );
    let mut cut_opts = Pkt::udp(ME, PEER, 1, 2).opts(DSTOPTS, 4);
    cut_opts.l4.clear();
    cut_opts.ext[0].1.truncate(12);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &cut_opts,
        TC_ACT_SHOT,
        tr,
        "options header cut short",
    );
    let mut cut_icmp = Pkt::echo(ME, PEER, true, 1);
    cut_icmp.l4.truncate(0);
    expect(
        &mut dp,
        FROM_CONTAINER,
        &cut_icmp,
        TC_ACT_SHOT,
        tr,
        "no ICMPv6 header",
    );
    // (The kernel's test_run refuses IPv6 frames shorter than the fixed
    // header, so truncation is tested past it.)
    expect(
        &mut dp,
        TO_CONTAINER,
        &cut_udp,
        TC_ACT_SHOT,
        tr,
        "cut short toward the container",
    );
    let mut bad_version = Pkt::udp(ME, PEER, 1, 2).bytes();
    bad_version[14] = 0x40;
    let before = drops(&dp, "malformed");
    assert_eq!(run(&mut dp, FROM_CONTAINER, &bad_version), TC_ACT_SHOT);
    assert_eq!(
        drops(&dp, "malformed") - before,
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

#[test]
fn world_reaches_a_container_address_only_with_a_reply() {
    let fs = Bpffs::new("v6-uplink");
    let mut dp = datapath(&fs.0, OPEN, true);
    dp.set_uplink_entry(LO_IFINDEX, uplink()).unwrap();
    let nar = "not-a-reply";
    let unsolicited = Pkt::udp(WORLD, ME, 53, 4444);
    expect(
        &mut dp,
        UPLINK_IN,
        &unsolicited,
        TC_ACT_SHOT,
        nar,
        "unsolicited UDP",
    );
    assert_eq!(
        xdp(&mut dp, &unsolicited.bytes()),
        XDP_DROP,
        "prefilter: unsolicited UDP"
    );
    let ping = Pkt::echo(WORLD, ME, true, 3);
    expect(&mut dp, UPLINK_IN, &ping, TC_ACT_SHOT, nar, "echo request");
    assert_eq!(
        xdp(&mut dp, &ping.bytes()),
        XDP_DROP,
        "prefilter: echo request"
    );
    let gw = Pkt::udp(WORLD, GW, 53, 4444);
    expect(
        &mut dp,
        UPLINK_IN,
        &gw,
        TC_ACT_SHOT,
        nar,
        "the gateway address",
    );
    let host = Pkt::udp(WORLD, "2001:db8::7", 53, 22);
    expect(&mut dp, UPLINK_IN, &host, TC_ACT_OK, nar, "to the host");
    assert_eq!(
        xdp(&mut dp, &host.bytes()),
        XDP_PASS,
        "prefilter: to the host"
    );
    let long_chain = {
        let mut p = unsolicited.clone();
        for _ in 0..9 {
            p = p.opts(DSTOPTS, 1);
        }
        p
    };
    expect(
        &mut dp,
        UPLINK_IN,
        &long_chain,
        TC_ACT_SHOT,
        "ipv6-ext-headers",
        "a chain the parser refuses",
    );

    // The container's flow goes out: its replies come in, behind
    // extension headers too, and the ICMPv6 errors that quote it.
    expect(
        &mut dp,
        UPLINK_OUT,
        &Pkt::udp(ME, WORLD, 4444, 53),
        TC_ACT_OK,
        nar,
        "flow out",
    );
    expect(&mut dp, UPLINK_IN, &unsolicited, TC_ACT_OK, nar, "reply");
    assert_eq!(
        xdp(&mut dp, &unsolicited.bytes()),
        XDP_PASS,
        "prefilter: reply"
    );
    let behind = unsolicited.clone().opts(DSTOPTS, 2);
    expect(
        &mut dp,
        UPLINK_IN,
        &behind,
        TC_ACT_OK,
        nar,
        "reply behind a destination options header",
    );
    assert_eq!(
        xdp(&mut dp, &behind.bytes()),
        XDP_PASS,
        "prefilter: reply behind options"
    );
    let mut other_port = unsolicited.clone();
    other_port.l4[0..2].copy_from_slice(&54u16.to_be_bytes());
    expect(
        &mut dp,
        UPLINK_IN,
        &other_port,
        TC_ACT_SHOT,
        nar,
        "another source port",
    );
    let quoted = Pkt::udp(ME, WORLD, 4444, 53).bytes()[14..].to_vec();
    let mut ptb_body = 1280u32.to_be_bytes().to_vec();
    ptb_body.extend_from_slice(&quoted);
    let ptb = Pkt::icmp("2001:db8::1", ME, 2, &ptb_body);
    expect(
        &mut dp,
        UPLINK_IN,
        &ptb,
        TC_ACT_OK,
        nar,
        "packet too big quoting the flow",
    );
    assert_eq!(
        xdp(&mut dp, &ptb.bytes()),
        XDP_PASS,
        "prefilter: ICMPv6 errors go to TC"
    );
    let stray_quote = Pkt::udp(ME, WORLD, 4445, 53).bytes()[14..].to_vec();
    let mut stray_body = 1280u32.to_be_bytes().to_vec();
    stray_body.extend_from_slice(&stray_quote);
    let stray = Pkt::icmp("2001:db8::1", ME, 2, &stray_body);
    expect(
        &mut dp,
        UPLINK_IN,
        &stray,
        TC_ACT_SHOT,
        nar,
        "packet too big quoting no flow",
    );

    // Echo: the reply to the container's request only.
    expect(
        &mut dp,
        UPLINK_OUT,
        &Pkt::echo(ME, WORLD, true, 77),
        TC_ACT_OK,
        nar,
        "echo out",
    );
    expect(
        &mut dp,
        UPLINK_IN,
        &Pkt::echo(WORLD, ME, false, 77),
        TC_ACT_OK,
        nar,
        "echo reply",
    );
    expect(
        &mut dp,
        UPLINK_IN,
        &Pkt::echo(WORLD, ME, false, 78),
        TC_ACT_SHOT,
        nar,
        "echo reply of another id",
    );

    // Fragments: the later ones follow a first that was let in.
    let later = Pkt::new(WORLD, ME, UDP, vec![0xab; 16]).fragment(2, false, 99);
    expect(
        &mut dp,
        UPLINK_IN,
        &later,
        TC_ACT_SHOT,
        nar,
        "later fragment, first not seen",
    );
    let first = unsolicited.clone().fragment(0, true, 99);
    expect(
        &mut dp,
        UPLINK_IN,
        &first,
        TC_ACT_OK,
        nar,
        "first fragment of a reply",
    );
    expect(
        &mut dp,
        UPLINK_IN,
        &later,
        TC_ACT_OK,
        nar,
        "later fragment of that reply",
    );
}
