//! Real packets through the overlay datapath between two hosts: host A
//! runs netd's programs (loaded in-process into the test thread's own
//! netns: its VXLAN device made by `overlay::ensure_device`, one container
//! netns behind a veth with the endpoint programs), host B (a netns
//! joined to A by an underlay veth) is a plain Linux VXLAN peer standing
//! for another host's containers. B can send what no netd would (another
//! VNI, another source, traffic icc forbids), so what A's `overlay_in`
//! checks is seen on its own, and netd's VXLAN is seen to interoperate
//! with the kernel's. Needs root, iproute2 and ping.
mod common;

use std::{net::Ipv4Addr, process::Command};

use common::{counter, link_in, sh, Bpffs};
use netd::{
    datapath::{addr_key, overlay::ensure_device, Datapath},
    net::HostLinks,
};
use netd_common::{Endpoint, NetworkInfo, NET_F_ICC, NET_F_OVERLAY, VXLAN_PORT};

const HOST_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Container on A, network 1 (10.77.0.0/24, VNI 4242).
const CA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// B's "containers": on network 1, on network 2 (10.78.0.0/24, VNI 4343),
/// and an address of network 1 that A knows behind another host.
const B1: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 7);
const B2: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 7);
const B_ELSEWHERE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 8);
const VNI1: u32 = 4242;
const VNI2: u32 = 4343;

fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    netd_common::mac_for_addr(ip.octets())
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One ping from `ns` (optionally bound to `dev` or source address) to `dst`.
fn ping(ns: &str, bind: Option<&str>, dst: Ipv4Addr) -> bool {
    let dst = dst.to_string();
    let mut args = vec!["netns", "exec", ns, "ping", "-c1", "-W1", "-q"];
    if let Some(b) = bind {
        args.extend(["-I", b]);
    }
    args.push(&dst);
    Command::new("ip")
        .args(&args)
        .output()
        .expect("spawn ping")
        .status
        .success()
}

/// Named netns deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("ovl-{tag}-{}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Hosts {
    dp: Datapath,
    /// Host B.
    b: Netns,
    /// The container on A.
    ca: Netns,
    _fs: Bpffs,
}

const OPEN: u32 = NET_F_ICC | NET_F_OVERLAY;

fn endpoint(flags: u32) -> Endpoint {
    Endpoint {
        ip: addr_key(CA),
        net_id: 1,
        net_flags: flags,
        gateway: addr_key(Ipv4Addr::new(10, 77, 0, 1)),
        mac: mac_of(CA),
        _pad: [0; 2],
    }
}

fn network(id: u32, gw: Ipv4Addr, flags: u32) -> NetworkInfo {
    NetworkInfo {
        net_id: id,
        gateway: addr_key(gw),
        flags,
        prefix_len: 24,
    }
}

/// Builds both hosts (see the module comment); the test thread is host A.
fn hosts(tag: &str) -> Hosts {
    let fs = Bpffs::new(tag);
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
    let b = Netns::new(&format!("{tag}-b"));
    let ca = Netns::new(&format!("{tag}-ca"));
    let (bn, can) = (b.0.as_str(), ca.0.as_str());
    let ca_mac = mac_str(mac_of(CA));
    for s in [
        &["ip", "link", "set", "lo", "up"][..],
        &[
            "ip", "link", "add", "ua", "type", "veth", "peer", "name", "ub", "netns", bn,
        ],
        &["ip", "addr", "add", "192.0.2.1/24", "dev", "ua"],
        &["ip", "link", "set", "ua", "up"],
        &["ip", "-n", bn, "addr", "add", "192.0.2.2/24", "dev", "ub"],
        &["ip", "-n", bn, "link", "set", "ub", "up"],
        // A's container behind veth `va`.
        &[
            "ip", "link", "add", "va", "type", "veth", "peer", "name", "eth0", "netns", can,
        ],
        &["ip", "-n", can, "link", "set", "eth0", "address", &ca_mac],
        &[
            "ip",
            "-n",
            can,
            "addr",
            "add",
            "10.77.0.2/24",
            "dev",
            "eth0",
        ],
        &["ip", "-n", can, "link", "set", "eth0", "up"],
    ] {
        sh(s);
    }
    // B: one kernel VXLAN device per VNI, pointed at A, with B's address
    // on it and A's container known (no ARP over the tunnel).
    for (dev, vni, addr) in [
        ("vx1", "4242", "10.77.0.7/24"),
        ("vx2", "4343", "10.78.0.7/24"),
        ("vx9", "999", "10.79.0.7/24"),
    ] {
        let b_ip = |args: &str| {
            let mut v = vec!["ip", "-n", bn];
            v.extend(args.split(' '));
            sh(&v);
        };
        b_ip(&format!(
            "link add {dev} type vxlan id {vni} remote 192.0.2.1 local 192.0.2.2 \
             dstport 4789 nolearning"
        ));
        b_ip(&format!("addr add {addr} dev {dev}"));
        b_ip(&format!("link set {dev} up"));
        b_ip(&format!(
            "neigh add 10.77.0.2 lladdr {ca_mac} dev {dev} nud permanent"
        ));
    }
    sh(&["ip", "-n", bn, "addr", "add", "10.77.0.8/32", "dev", "vx1"]);
    let mut dp = Datapath::load(&fs.0, 1024).expect("load programs");
    dp.upsert_network(
        "10.77.0.0/24".parse().unwrap(),
        network(1, Ipv4Addr::new(10, 77, 0, 1), OPEN),
    )
    .unwrap();
    dp.upsert_network(
        "10.78.0.0/24".parse().unwrap(),
        network(2, Ipv4Addr::new(10, 78, 0, 1), OPEN),
    )
    .unwrap();
    dp.register_overlay_network(1, VNI1).unwrap();
    dp.register_overlay_network(2, VNI2).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let va = rt.block_on(async {
        let links = HostLinks::connect().unwrap();
        ensure_device(&links, &mut dp, Some(HOST_A), VXLAN_PORT)
            .await
            .expect("make the VXLAN device");
        links.index_of("va").await.unwrap().unwrap()
    });
    dp.use_blocks().expect("the endpoint filter blocks");
    dp.attach_endpoint("va", va, endpoint(OPEN)).unwrap();
    sh(&["ip", "link", "set", "va", "up"]);
    dp.set_remote_endpoint(1, VNI1, B1, HOST_B, link_in(bn, "vx1").1)
        .unwrap();
    dp.set_remote_endpoint(2, VNI2, B2, HOST_B, link_in(bn, "vx2").1)
        .unwrap();
    // Known, but on another host than the one it comes from.
    dp.set_remote_endpoint(
        1,
        VNI1,
        B_ELSEWHERE,
        Ipv4Addr::new(192, 0, 2, 99),
        mac_of(B_ELSEWHERE),
    )
    .unwrap();
    Hosts { dp, b, ca, _fs: fs }
}

#[test]
fn container_reaches_the_remote_host_through_the_tunnel() {
    let mut h = hosts("reach");
    assert!(ping(&h.ca.0, None, B1), "A's container -> B over VXLAN");
    assert!(
        counter(&h.dp, "overlay-arp-reply") >= 1,
        "ARP answered on A"
    );
    assert!(counter(&h.dp, "overlay-encap") >= 1);
    assert!(
        counter(&h.dp, "overlay-decap") >= 1,
        "the reply came out of the tunnel"
    );
    let decap = counter(&h.dp, "overlay-decap");
    assert!(ping(&h.b.0, None, CA), "B -> A's container");
    assert!(counter(&h.dp, "overlay-decap") > decap);
    // Removed from the remotes: A no longer takes B's packets for it.
    h.dp.remove_remote_endpoint(1, B1).unwrap();
    let before = counter(&h.dp, "overlay-unknown-source");
    assert!(!ping(&h.b.0, None, CA));
    assert!(counter(&h.dp, "overlay-unknown-source") > before);
}

#[test]
fn what_the_receiver_refuses_is_dropped_and_counted() {
    let h = hosts("refuse");
    let b = h.b.0.as_str();
    // Another VNI than any network of A's.
    let before = counter(&h.dp, "overlay-unknown-vni");
    assert!(!ping(b, Some("vx9"), CA));
    assert!(counter(&h.dp, "overlay-unknown-vni") > before);
    // Network 2's VNI, for a container of network 1: isolated.
    let before = counter(&h.dp, "network-isolation");
    assert!(!ping(b, Some("vx2"), CA));
    assert!(counter(&h.dp, "network-isolation") > before);
    // A source A knows behind another host.
    let before = counter(&h.dp, "overlay-unknown-source");
    assert!(!ping(b, Some("10.77.0.8"), CA));
    assert!(counter(&h.dp, "overlay-unknown-source") > before);
    // Negative control: the allowed path works in the same bed.
    assert!(ping(b, Some("vx1"), CA));
}

#[test]
fn icc_off_holds_at_the_receiver_too() {
    let mut h = hosts("icc");
    let closed = NET_F_OVERLAY;
    h.dp.upsert_network(
        "10.77.0.0/24".parse().unwrap(),
        network(1, Ipv4Addr::new(10, 77, 0, 1), closed),
    )
    .unwrap();
    let va = {
        let s = sh(&["ip", "-o", "link", "show", "va"]);
        s.split(':').next().unwrap().trim().parse::<u32>().unwrap()
    };
    h.dp.set_endpoint(va, endpoint(closed)).unwrap();
    // Sender side (A): dropped before the tunnel.
    let before = counter(&h.dp, "icc-disabled");
    assert!(!ping(&h.ca.0, None, B1));
    assert!(counter(&h.dp, "icc-disabled") > before);
    // B does not play by the rules: A's overlay_in drops it.
    let before = counter(&h.dp, "icc-disabled");
    let decap = counter(&h.dp, "overlay-decap");
    assert!(!ping(&h.b.0, Some("vx1"), CA));
    assert!(counter(&h.dp, "icc-disabled") > before);
    assert_eq!(counter(&h.dp, "overlay-decap"), decap);
}
