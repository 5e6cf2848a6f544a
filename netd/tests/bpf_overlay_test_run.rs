//! BPF_PROG_TEST_RUN tests of overlay networks: what `from_container` does
//! with a packet for a container of its overlay network on another host
//! (into the tunnel, Ethernet destination rewritten, redirected to the
//! VXLAN device; dropped before the tunnel when the policy says so; left
//! alone when the address is no remote endpoint), the ARP answers it gives
//! for remote endpoints, and `overlay_in` refusing what did not come out of
//! the tunnel. The VXLAN device is made by the product code
//! (`overlay::ensure_device`) in a private netns per test. Needs root.
mod common;

use std::collections::BTreeMap;

use common::{
    counter, endpoint, enter_private_netns, ip, load, network,
    packet::{arp_request, Pkt},
    run_classifier, run_prefilter, sh, Bpffs, LO_IFINDEX, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT,
    XDP_PASS,
};
use netd::{
    datapath::{
        addr_key,
        overlay::{ensure_device, remove_device, OverlayDevice},
        Datapath, HostRouting, FROM_CONTAINER, OVERLAY_IN, UPLINK_IN,
    },
    net::HostLinks,
};
use netd_common::{
    mac_for_addr as mac_of, Uplink, NET_F_ICC, NET_F_MASQUERADE, NET_F_OVERLAY, VXLAN_DEVICE,
    VXLAN_PORT,
};

const ME: [u8; 4] = [10, 9, 0, 2];
const GATEWAY: [u8; 4] = [10, 9, 0, 1];
/// On host 192.0.2.12 (the underlay is 192.0.2.0/24, this host .11).
const REMOTE: [u8; 4] = [10, 9, 0, 7];
const REMOTE_MAC: [u8; 6] = [0x02, 0x42, 0xaa, 0xbb, 0xcc, 0x07];
const REMOTE_HOST: [u8; 4] = [192, 0, 2, 12];
const LOCAL_HOST: [u8; 4] = [192, 0, 2, 11];
const VNI: u32 = 4242;
/// A network the container is not on (another overlay network).
const OTHER: [u8; 4] = [10, 8, 0, 5];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Moves this test's thread into a new netns with an underlay `under0`
/// (a veth, MTU 1400, 192.0.2.11/24) and makes the VXLAN device there.
fn private_netns(dp: &mut Datapath) -> OverlayDevice {
    enter_private_netns(&[
        &[
            "ip", "link", "add", "under0", "mtu", "1400", "type", "veth", "peer", "name", "under0p",
        ],
        &["ip", "addr", "add", "192.0.2.11/24", "dev", "under0"],
        &["ip", "link", "set", "under0", "up"],
        &["ip", "link", "set", "under0p", "up"],
    ]);
    rt().block_on(async {
        let links = HostLinks::connect().unwrap();
        ensure_device(&links, dp, Some(ip(LOCAL_HOST)), VXLAN_PORT)
            .await
            .expect("make the VXLAN device")
    })
}

/// Network 1 (10.9.0.0/24, overlay, VNI 4242) with this container on
/// `lo` and 10.9.0.7 on another host; network 2 (10.8.0.0/24, overlay,
/// VNI 4343) with 10.8.0.5 on another host.
fn datapath(fs: &Bpffs, flags: u32) -> Datapath {
    let mut dp = load(fs);
    network(&mut dp, 1, "10.9.0.0/24", GATEWAY, flags);
    network(
        &mut dp,
        2,
        "10.8.0.0/24",
        [10, 8, 0, 1],
        NET_F_ICC | NET_F_OVERLAY,
    );
    dp.set_endpoint(LO_IFINDEX, endpoint(ME, 1, flags, GATEWAY))
        .unwrap();
    dp.register_overlay_network(1, VNI).unwrap();
    dp.register_overlay_network(2, VNI + 101).unwrap();
    dp.set_remote_endpoint(1, VNI, ip(REMOTE), ip(REMOTE_HOST), REMOTE_MAC)
        .unwrap();
    dp.set_remote_endpoint(2, VNI + 101, ip(OTHER), ip(REMOTE_HOST), mac_of(OTHER))
        .unwrap();
    dp
}

const OPEN: u32 = NET_F_ICC | NET_F_MASQUERADE | NET_F_OVERLAY;

/// A UDP packet from this container to `dst`, sent to MAC `dmac`.
fn udp(dmac: [u8; 6], dst: [u8; 4]) -> Vec<u8> {
    Pkt {
        dmac,
        smac: mac_of(ME),
        ..Pkt::udp(ME, dst, 16)
    }
    .bytes()
}

#[test]
fn remote_endpoint_goes_into_the_tunnel() {
    let fs = Bpffs::new("ovl-encap");
    let mut dp = datapath(&fs, OPEN);
    let dev = private_netns(&mut dp);
    assert_eq!(dev.underlay_mtu, 1400);
    assert_eq!(dev.network_mtu(), 1350);
    let cfg = dp.overlay_config().unwrap();
    assert_eq!(cfg.ifindex, dev.ifindex);
    assert_eq!(cfg.local, addr_key(ip(LOCAL_HOST)));
    // Sent to the MAC the container learnt (stale or not): the remote's.
    let sent = udp([0x02, 0, 0, 0, 0, 0x99], REMOTE);
    let (rc, out) = run_classifier(&mut dp, FROM_CONTAINER, &sent);
    assert_eq!(rc, TC_ACT_REDIRECT, "redirected to the VXLAN device");
    assert_eq!(
        &out[0..6],
        &REMOTE_MAC,
        "inner destination: the remote's MAC"
    );
    assert_eq!(&out[6..], &sent[6..], "the rest as sent: no TTL change");
    assert_eq!(counter(&dp, "overlay-encap"), 1);
    // Kernel host routing encapsulates just the same (the bridge has no
    // way to the other host).
    dp.set_host_routing(HostRouting::Kernel).unwrap();
    assert_eq!(
        run_classifier(&mut dp, FROM_CONTAINER, &sent).0,
        TC_ACT_REDIRECT
    );
    assert_eq!(counter(&dp, "overlay-encap"), 2);
}

#[test]
fn what_is_no_remote_endpoint_stays_on_this_host() {
    let fs = Bpffs::new("ovl-local");
    let mut dp = datapath(&fs, OPEN);
    private_netns(&mut dp);
    // No container at .9 anywhere: the bridge's business, as on one host.
    let sent = udp(mac_of([10, 9, 0, 9]), [10, 9, 0, 9]);
    assert_eq!(
        run_classifier(&mut dp, FROM_CONTAINER, &sent),
        (TC_ACT_OK, sent)
    );
    assert_eq!(counter(&dp, "no-endpoint"), 1);
    // The gateway is this host's.
    let sent = udp(mac_of(GATEWAY), GATEWAY);
    assert_eq!(
        run_classifier(&mut dp, FROM_CONTAINER, &sent),
        (TC_ACT_OK, sent)
    );
    // Removed: no longer tunnelled.
    dp.remove_remote_endpoint(1, ip(REMOTE)).unwrap();
    let sent = udp(REMOTE_MAC, REMOTE);
    assert_eq!(run_classifier(&mut dp, FROM_CONTAINER, &sent).0, TC_ACT_OK);
    assert_eq!(counter(&dp, "overlay-encap"), 0);
}

#[test]
fn policy_is_decided_before_the_tunnel() {
    let fs = Bpffs::new("ovl-policy");
    let mut dp = datapath(&fs, NET_F_MASQUERADE | NET_F_OVERLAY);
    private_netns(&mut dp);
    // icc off: the remote peer is as unreachable as a local one.
    let (rc, _) = run_classifier(&mut dp, FROM_CONTAINER, &udp(REMOTE_MAC, REMOTE));
    assert_eq!(rc, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "icc-disabled"), 1);
    // Another overlay network's container: isolated, though it is a
    // remote endpoint (of network 2).
    let (rc, _) = run_classifier(&mut dp, FROM_CONTAINER, &udp(mac_of(OTHER), OTHER));
    assert_eq!(rc, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "network-isolation"), 1);
    assert_eq!(counter(&dp, "overlay-encap"), 0);
}

#[test]
fn without_the_device_nothing_is_tunnelled() {
    let fs = Bpffs::new("ovl-nodev");
    let mut dp = datapath(&fs, OPEN);
    let dev = private_netns(&mut dp);
    rt().block_on(async {
        let links = HostLinks::connect().unwrap();
        remove_device(&links, &mut dp).await.unwrap();
        assert_eq!(links.index_of(VXLAN_DEVICE).await.unwrap(), None);
    });
    assert_eq!(dp.overlay_config().unwrap().ifindex, 0);
    assert!(!dp.pins().link(VXLAN_DEVICE, OVERLAY_IN).exists());
    let (rc, _) = run_classifier(&mut dp, FROM_CONTAINER, &udp(REMOTE_MAC, REMOTE));
    assert_eq!(rc, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "overlay-no-device"), 1);
    let _ = dev;
}

#[test]
fn arp_for_a_remote_endpoint_is_answered() {
    let fs = Bpffs::new("ovl-arp");
    let mut dp = datapath(&fs, OPEN);
    private_netns(&mut dp);
    let req = arp_request(mac_of(ME), ME, REMOTE);
    let (rc, out) = run_classifier(&mut dp, FROM_CONTAINER, &req);
    assert_eq!(rc, TC_ACT_REDIRECT, "answered back into the container");
    let mut want = mac_of(ME).to_vec();
    want.extend_from_slice(&REMOTE_MAC);
    want.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    want.extend_from_slice(&REMOTE_MAC);
    want.extend_from_slice(&REMOTE);
    want.extend_from_slice(&mac_of(ME));
    want.extend_from_slice(&ME);
    assert_eq!(&out[..42], &want[..], "ARP reply");
    assert_eq!(counter(&dp, "overlay-arp-reply"), 1);
    // Not answered: another network's remote, an address with no remote,
    // a request that is not from the container's own address (a probe),
    // a reply.
    for f in [
        arp_request(mac_of(ME), ME, OTHER),
        arp_request(mac_of(ME), ME, [10, 9, 0, 9]),
        arp_request(mac_of(ME), [0, 0, 0, 0], REMOTE),
        {
            let mut r = arp_request(mac_of(ME), ME, REMOTE);
            r[21] = 2;
            r
        },
    ] {
        assert_eq!(run_classifier(&mut dp, FROM_CONTAINER, &f), (TC_ACT_OK, f));
    }
    assert_eq!(counter(&dp, "overlay-arp-reply"), 1);
}

#[test]
fn arp_on_a_local_network_is_left_to_the_bridge() {
    let fs = Bpffs::new("ovl-arp-local");
    // The same maps, but the container's network is no overlay network.
    let mut dp = datapath(&fs, NET_F_ICC | NET_F_MASQUERADE);
    private_netns(&mut dp);
    let req = arp_request(mac_of(ME), ME, REMOTE);
    assert_eq!(
        run_classifier(&mut dp, FROM_CONTAINER, &req),
        (TC_ACT_OK, req)
    );
    assert_eq!(counter(&dp, "overlay-arp-reply"), 0);
    let sent = udp(REMOTE_MAC, REMOTE);
    assert_eq!(run_classifier(&mut dp, FROM_CONTAINER, &sent).0, TC_ACT_OK);
    assert_eq!(counter(&dp, "overlay-encap"), 0);
}

#[test]
fn overlay_in_refuses_what_did_not_come_out_of_the_tunnel() {
    let fs = Bpffs::new("ovl-in");
    let mut dp = datapath(&fs, OPEN);
    private_netns(&mut dp);
    // A test run's skb carries no tunnel metadata: as if something other
    // than the VXLAN device handed it over.
    let mut f = udp(mac_of(ME), ME);
    f[14 + 12..14 + 16].copy_from_slice(&REMOTE);
    let (rc, _) = run_classifier(&mut dp, OVERLAY_IN, &f);
    assert_eq!(rc, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "overlay-unknown-vni"), 1);
    assert_eq!(counter(&dp, "overlay-decap"), 0);
}

#[test]
fn device_is_adopted_and_maps_follow_the_control_plane() {
    let fs = Bpffs::new("ovl-adopt");
    let mut dp = datapath(&fs, OPEN);
    let dev = private_netns(&mut dp);
    let detail = sh(&["ip", "-d", "link", "show", VXLAN_DEVICE]);
    assert!(detail.contains("external"), "collect_md mode: {detail}");
    assert!(detail.contains("dstport 4789"), "{detail}");
    assert!(detail.contains("nolearning"), "{detail}");
    assert!(detail.contains("local 192.0.2.11"), "{detail}");
    assert!(detail.contains("mtu 1350"), "{detail}");
    assert!(
        detail.contains("state UNKNOWN") || detail.contains(",UP"),
        "{detail}"
    );
    assert!(dp.pins().link(VXLAN_DEVICE, OVERLAY_IN).exists());
    // A second agent start adopts the device (same ifindex).
    let again = rt().block_on(async {
        let links = HostLinks::connect().unwrap();
        ensure_device(&links, &mut dp, Some(ip(LOCAL_HOST)), VXLAN_PORT)
            .await
            .unwrap()
    });
    assert_eq!(again.ifindex, dev.ifindex);
    // An address that is not the host's is refused with a sentence.
    let err = rt().block_on(async {
        let links = HostLinks::connect().unwrap();
        ensure_device(&links, &mut dp, Some(ip([192, 0, 2, 99])), VXLAN_PORT)
            .await
            .unwrap_err()
    });
    assert!(
        format!("{err:#}").contains("is not an address of this host"),
        "{err:#}"
    );
    // A VNI carries one network.
    assert!(dp.register_overlay_network(3, VNI).is_err());
    assert!(dp.register_overlay_network(3, 0).is_err());
    // Sync: exactly what the store says.
    let mut want = BTreeMap::new();
    want.insert(ip([10, 9, 0, 8]), (ip(REMOTE_HOST), mac_of([10, 9, 0, 8])));
    want.insert(ip(REMOTE), (ip([192, 0, 2, 13]), REMOTE_MAC));
    assert_eq!(dp.sync_remote_endpoints(1, VNI, &want).unwrap(), (2, 0));
    assert_eq!(dp.sync_remote_endpoints(1, VNI, &want).unwrap(), (0, 0));
    want.remove(&ip([10, 9, 0, 8]));
    assert_eq!(dp.sync_remote_endpoints(1, VNI, &want).unwrap(), (0, 1));
    let remotes = dp.remote_endpoints().unwrap();
    assert_eq!(remotes.len(), 2, "{remotes:?}");
    assert!(remotes
        .iter()
        .any(|r| r.net_id == 1 && r.ip == ip(REMOTE) && r.host == ip([192, 0, 2, 13])));
    // Removing the network takes its VNI and remotes, not the others'.
    dp.unregister_overlay_network(1).unwrap();
    assert_eq!(dp.overlay_networks().unwrap(), vec![(VNI + 101, 2)]);
    let remotes = dp.remote_endpoints().unwrap();
    assert_eq!(remotes.len(), 1);
    assert_eq!(remotes[0].net_id, 2);
}

#[test]
fn the_underlay_s_vxlan_is_left_to_the_host_by_the_uplink() {
    let fs = Bpffs::new("ovl-underlay");
    let mut dp = datapath(&fs, OPEN);
    let up = Uplink {
        addr: addr_key(ip(LOCAL_HOST)),
        port_min: 40000,
        port_max: 40009,
    };
    dp.set_uplink_entry(LO_IFINDEX, up).unwrap();
    // The remote container's packet for this one, as the other host's
    // VXLAN device sends it: addressed to this host, so the host's.
    let inner = Pkt {
        dmac: mac_of(ME),
        smac: REMOTE_MAC,
        ..Pkt::udp(REMOTE, ME, 16)
    }
    .bytes();
    let outer = Pkt::vxlan(REMOTE_HOST, LOCAL_HOST, VNI, &inner).bytes();
    assert_eq!(
        run_classifier(&mut dp, UPLINK_IN, &outer),
        (TC_ACT_OK, outer.clone())
    );
    assert_eq!(run_prefilter(&mut dp, &outer).0, XDP_PASS);
    // The same packet not tunnelled is unsolicited traffic to a
    // container address.
    let bare = Pkt::udp(REMOTE_HOST, ME, 16).bytes();
    assert_eq!(run_classifier(&mut dp, UPLINK_IN, &bare).0, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "not-a-reply"), 1);
}
