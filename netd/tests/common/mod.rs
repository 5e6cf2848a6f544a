//! What the BPF test-run tests share, in one place:
//!
//! - a private bpffs per test and the programs loaded into it
//!   ([`Bpffs`], [`load`]), with networks and endpoints put in the maps
//!   ([`network`], [`network6`], [`endpoint`], [`endpoint6`]);
//! - one BPF_PROG_TEST_RUN call ([`run_classifier`], [`run_prefilter`]),
//!   the counters a run bumps ([`counter`]) and the "verdict plus exactly
//!   one more drop of its reason" assertion ([`assert_verdict`]);
//! - the frames they send: [`packet`] (Ethernet, IPv4, TCP, UDP, ICMP,
//!   ARP, VXLAN), [`packet6`] (IPv6 with extension headers, ICMPv6), every
//!   checksum computed;
//! - reading a frame back with every checksum verified ([`verify`]);
//! - a private netns for the tests whose programs do fib lookups
//!   ([`enter_private_netns`], [`link`], [`link_in`], [`sh`]).
//!
//! A test binary pulls it in with `mod common;`. A typical test:
//!
//! ```ignore
//! use common::{load, network, endpoint, run_classifier, counter, Bpffs,
//!              packet::Pkt, verify::verify4, LO_IFINDEX, TC_ACT_OK};
//! use netd::datapath::FROM_CONTAINER;
//!
//! let fs = Bpffs::new("my-test");
//! let mut dp = load(&fs);
//! network(&mut dp, 1, "10.1.0.0/24", [10, 1, 0, 1], NET_F_ICC);
//! dp.set_endpoint(LO_IFINDEX, endpoint([10, 1, 0, 2], 1, NET_F_ICC, [10, 1, 0, 1])).unwrap();
//! let sent = Pkt::udp([10, 1, 0, 2], [10, 1, 0, 3], 16).bytes();
//! let (verdict, out) = run_classifier(&mut dp, FROM_CONTAINER, &sent);
//! assert_eq!(verdict, TC_ACT_OK);
//! assert_eq!(verify4(&out).dst, Ipv4Addr::new(10, 1, 0, 3));
//! ```
// Each test binary uses a part of it.
#![allow(dead_code)]

pub mod packet;
pub mod packet6;
pub mod verify;

use std::{net::Ipv4Addr, path::PathBuf};

use netd::datapath::{addr6_key, addr_key, ensure_bpffs, test_run, Datapath};
use netd_common::{mac_for_addr, Endpoint, Endpoint6, NetworkInfo, NetworkInfo6};

#[allow(unused_imports)]
pub use verify::csum;

/// TC verdicts and XDP actions the programs return.
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
/// test_run hands the program an skb on the loopback device: the ifindex
/// to give the test's endpoint or uplink.
pub const LO_IFINDEX: u32 = 1;
/// Conntrack entries per map in a test's datapath.
pub const CT_SIZE: u32 = 1024;

/// A private bpffs, unmounted and removed on drop.
pub struct Bpffs(pub PathBuf);

impl Bpffs {
    /// Mounts one under the temp dir; `tag` names the test (unique per
    /// test binary).
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("netd-testrun-{tag}-{}", std::process::id()));
        ensure_bpffs(&dir).expect("mount bpffs (run as root)");
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The embedded object loaded with its maps pinned in `fs` (empty maps:
/// a fresh load replaces what an earlier one pinned there).
pub fn load(fs: &Bpffs) -> Datapath {
    Datapath::load(&fs.0, CT_SIZE).expect("load programs")
}

pub fn ip(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// Puts IPv4 network `net_id` (`subnet` as "10.1.0.0/24", its gateway,
/// `NET_F_*` flags) in the maps.
pub fn network(dp: &mut Datapath, net_id: u32, subnet: &str, gateway: [u8; 4], flags: u32) {
    let subnet: ipnet::Ipv4Net = subnet.parse().expect("an IPv4 subnet");
    let info = NetworkInfo {
        net_id,
        gateway: addr_key(ip(gateway)),
        flags,
        prefix_len: u32::from(subnet.prefix_len()),
    };
    dp.upsert_network(subnet, info).unwrap();
}

/// Puts the IPv6 subnet of network `net_id` ("fd00:a::/64", its gateway)
/// in the maps.
pub fn network6(dp: &mut Datapath, net_id: u32, subnet: &str, gateway: &str, flags: u32) {
    let subnet: ipnet::Ipv6Net = subnet.parse().expect("an IPv6 subnet");
    let info = NetworkInfo6 {
        net_id,
        flags,
        prefix_len: u32::from(subnet.prefix_len()),
        _pad: 0,
        gateway: addr6_key(gateway.parse().expect("an IPv6 gateway")),
    };
    dp.upsert_network6(subnet, info).unwrap();
}

/// The endpoint entry of container `addr` on network `net_id`, with the
/// MAC derived from its address (`mac_for_addr`; set `.mac` for another).
pub fn endpoint(addr: [u8; 4], net_id: u32, net_flags: u32, gateway: [u8; 4]) -> Endpoint {
    Endpoint {
        ip: addr_key(ip(addr)),
        net_id,
        net_flags,
        gateway: addr_key(ip(gateway)),
        mac: mac_for_addr(addr),
        _pad: [0; 2],
    }
}

/// The IPv6 endpoint entry of a container (`ENDPOINT6`): its address, its
/// gateway and the gateway's (bridge's) MAC.
pub fn endpoint6(addr: &str, gateway: &str, gateway_mac: [u8; 6]) -> Endpoint6 {
    Endpoint6 {
        ip: addr6_key(addr.parse().expect("an IPv6 address")),
        gateway: addr6_key(gateway.parse().expect("an IPv6 gateway")),
        gateway_mac,
        _pad: [0; 2],
    }
}

/// Test-runs classifier `program` (`FROM_CONTAINER`, `UPLINK_IN`, …) on
/// `frame`: (verdict, frame as left).
pub fn run_classifier(dp: &mut Datapath, program: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    let prog = dp.program(program).expect("program in the object");
    test_run(prog, frame, None).expect("test_run")
}

/// Test-runs the uplink's XDP prefilter on `frame`: (action, frame as left).
pub fn run_prefilter(dp: &mut Datapath, frame: &[u8]) -> (u32, Vec<u8>) {
    let prog = dp.prefilter_program().expect("prefilter in the object");
    test_run(prog, frame, None).expect("test_run")
}

/// A counter by name: a drop reason, a host-routing shortcut or fallback.
pub fn counter(dp: &Datapath, name: &str) -> u64 {
    if let Some(d) = dp.drop_counts().unwrap().iter().find(|d| d.reason == name) {
        return d.packets;
    }
    let c = dp.routing_counts().unwrap();
    c.shortcuts
        .iter()
        .chain(c.fallbacks.iter())
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

/// Runs classifier `program` on `frame` and asserts the verdict and that
/// drop reason `reason` counted exactly one more packet if it is
/// `TC_ACT_SHOT`, none otherwise; `what` names the case in a failure.
///
/// ```ignore
/// assert_verdict(&mut dp, FROM_CONTAINER, &Pkt6::udp(ME, OTHER, 1, 2).bytes(),
///                TC_ACT_SHOT, "network-isolation", "other network");
/// ```
pub fn assert_verdict(
    dp: &mut Datapath,
    program: &str,
    frame: &[u8],
    verdict: u32,
    reason: &str,
    what: &str,
) {
    let before = counter(dp, reason);
    assert_eq!(run_classifier(dp, program, frame).0, verdict, "{what}");
    let counted = counter(dp, reason) - before;
    let want = u64::from(verdict == TC_ACT_SHOT);
    assert_eq!(counted, want, "{what}: {reason} counted {counted}");
}

/// Runs a fixture command (iproute2 and the like), which must succeed;
/// returns its stdout.
pub fn sh(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves this test's thread into a new netns (gone with the thread), sets
/// `lo` up there and runs the fixture commands `steps` in it. For the
/// programs whose fib lookups and redirects see the test thread's netns.
pub fn enter_private_netns(steps: &[&[&str]]) {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
    sh(&["ip", "link", "set", "lo", "up"]);
    for s in steps {
        sh(s);
    }
}

/// `ip link show DEV` in this thread's netns: (ifindex, MAC).
pub fn link(dev: &str) -> (u32, [u8; 6]) {
    parse_link(&sh(&["ip", "-o", "link", "show", dev]))
}

/// `ip -n NETNS link show DEV`: (ifindex, MAC) of a device in a named netns.
pub fn link_in(netns: &str, dev: &str) -> (u32, [u8; 6]) {
    parse_link(&sh(&["ip", "-n", netns, "-o", "link", "show", dev]))
}

fn parse_link(s: &str) -> (u32, [u8; 6]) {
    let index = s.split(':').next().unwrap().trim().parse().unwrap();
    let mac = s
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no MAC in {s}"));
    let mut m = [0u8; 6];
    for (i, b) in mac.split(':').enumerate() {
        m[i] = u8::from_str_radix(b, 16).unwrap();
    }
    (index, m)
}
