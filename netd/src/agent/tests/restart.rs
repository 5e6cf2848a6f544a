//! A restarted agent adopts what survived without recreating it, and
//! cleans up what the previous one left half-done.
use super::{ip, net, Bed};
use crate::{
    kernel::fake::{Kind, Link},
    model::Mode,
};

async fn bed() -> Bed {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.network("n2", "10.2.0.0/24").await;
    bed.container("c1", "n1", &["8080:80", "5353:53/udp"]).await;
    bed.container("c2", "n2", &[]).await;
    bed
}

#[tokio::test]
async fn a_restart_adopts_everything_as_it_is() {
    let bed = bed().await;
    let before = bed.snapshot().await;
    let bed = bed.restart().await;
    assert_eq!(bed.repairs().await, Vec::<String>::new());
    // Same links (same ifindexes: nothing recreated), same entries and
    // pins, the same host ports held again.
    assert_eq!(bed.snapshot().await, before);
}

#[tokio::test]
async fn a_restart_upgrades_the_programs_of_every_endpoint() {
    let bed = bed().await;
    bed.fake.count_steps();
    let bed = bed.restart().await;
    let steps = bed.fake.steps();
    for c in bed.state().await.containers.values() {
        let veth = &c.endpoints[0].host_ifname;
        for p in ["from_container", "to_container"] {
            let step = format!("attach {p} to {veth}");
            assert!(steps.contains(&step), "{step} missing in {steps:?}");
        }
    }
    // Adopted, not recreated.
    assert!(!steps.iter().any(|s| s.starts_with("create")), "{steps:?}");
}

/// What a crash between the kernel steps and the store write leaves: a
/// marked veth (with its peer inside the netns, entry and pins) that no
/// stored container owns; and a published entry nobody owns.
#[tokio::test]
async fn a_restart_removes_what_a_crashed_add_left() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    let ns = bed.netns("crashed");
    let good_ns = bed.fake.state().namespaces[&ns].clone();
    // The kernel half of an add, without the store half.
    let c = bed.container("crashed", "n1", &["9090:90"]).await;
    bed.state().await.containers.remove(&c.id);
    bed.state()
        .await
        .store
        .apply(&[crate::store::StoreOp::DeleteContainer(&c.id)])
        .unwrap();
    let bed = bed.restart().await;
    let repairs = bed.repairs().await;
    let veth = &c.endpoints[0].host_ifname;
    assert!(
        repairs
            .iter()
            .any(|r| r == &format!("deleted orphan link {veth}")),
        "{repairs:?}"
    );
    assert!(
        repairs
            .iter()
            .any(|r| r.contains("removed orphan published port 9090")),
        "{repairs:?}"
    );
    let mut snap = bed.snapshot().await;
    assert_eq!(snap.kernel.namespaces.remove(&ns), Some(good_ns));
    assert_eq!(snap, good);
}

#[tokio::test]
async fn a_restart_releases_containers_whose_netns_went_while_down() {
    let bed = bed().await;
    let c1 = bed.find("c1").await;
    bed.fake.remove_netns(&c1.netns);
    let bed = bed.restart().await;
    assert!(
        bed.repairs()
            .await
            .iter()
            .any(|r| r == "released container c1 (netns gone)"),
        "{:?}",
        bed.repairs().await
    );
    let snap = bed.snapshot().await;
    assert!(snap.stored_containers.iter().all(|c| c.name != "c1"));
    assert!(snap.kernel.published.is_empty());
    assert!(snap.held.is_empty());
    assert_eq!(snap.kernel.endpoints.len(), 1);
    assert!(!snap
        .kernel
        .pins
        .iter()
        .any(|p| p.starts_with(&c1.endpoints[0].host_ifname)));
}

/// A host process took a published port while the agent was down: the
/// agent starts anyway, keeps the mapping in the datapath, and CHECK tells.
#[tokio::test]
async fn a_restart_with_a_published_port_taken_on_the_host_keeps_the_mapping() {
    let bed = bed().await;
    let before = bed.snapshot().await;
    let bed = {
        let Bed { fake, agent, dir } = bed;
        drop(agent);
        fake.with(|s| {
            s.busy_ports.insert((super::ANY, 8080, 6));
        });
        Bed::reopen(fake, dir).await
    };
    let snap = bed.snapshot().await;
    assert_eq!(snap.kernel.published, before.kernel.published);
    assert_eq!(snap.held.len(), before.held.len() - 1);
    let problems = bed.check("c1").await;
    assert_eq!(
        problems,
        vec!["host port of 80/tcp -> 0.0.0.0:8080 is not held".to_string()]
    );
}

#[tokio::test]
async fn a_restart_recreates_a_bridge_deleted_while_down() {
    let bed = bed().await;
    let bridge = bed
        .state()
        .await
        .networks
        .values()
        .find(|n| n.name == "n2")
        .unwrap()
        .bridge
        .clone();
    bed.fake.with(|s| {
        let i = s.index_of(&bridge).unwrap();
        s.delete_index(i);
    });
    let bed = bed.restart().await;
    assert!(
        bed.repairs()
            .await
            .iter()
            .any(|r| r.starts_with(&format!("recreated bridge {bridge}"))),
        "{:?}",
        bed.repairs().await
    );
    let s = bed.fake.state();
    let l = s.link(&bridge).unwrap();
    assert!(l.up && matches!(l.kind, Kind::Bridge));
    assert!(s.host_addrs.contains(&ip("10.2.0.1")));
    for c in ["c1", "c2"] {
        let problems = bed.check(c).await;
        assert!(problems.is_empty(), "{c}: {problems:?}");
    }
}

#[tokio::test]
async fn a_restart_with_the_default_bridge_creates_it_once() {
    let mut bed = Bed::with_config(|c| c.default_bridge = true).await;
    let default = bed.state().await.find_network("bridge").unwrap().clone();
    assert_eq!(default.subnet, net("172.17.0.0/16"));
    bed.container("c1", "bridge", &[]).await;
    let before = bed.snapshot().await;
    let bed = {
        let Bed { fake, agent, dir } = bed;
        drop(agent);
        Bed::reopen_with(fake, dir, |c| c.default_bridge = true).await
    };
    assert_eq!(bed.snapshot().await, before);
    let c1 = bed.state().await.find_container("c1").unwrap().clone();
    assert_eq!(c1.mode, Mode::Bridge);
}

/// An agent started without a cluster store removes the overlay an
/// earlier one (with a store) left: the VXLAN device, the program on it
/// and the datapath's pointer to it; the host's other links stay.
#[tokio::test]
async fn a_restart_without_a_cluster_store_removes_an_old_overlay_device() {
    let bed = bed().await;
    let good = bed.snapshot().await;
    bed.fake.with(|s| {
        let index = s.links.keys().max().unwrap() + 1;
        s.links.insert(
            index,
            Link {
                name: netd_common::VXLAN_DEVICE.into(),
                kind: Kind::Other("vxlan".into()),
                up: true,
                master: None,
                owner: Some(crate::net::vxlan::VXLAN_OWNER.into()),
                addrs: Vec::new(),
                addrs6: Vec::new(),
                mac: [2, 0, 0, 0, 7, 1],
                mtu: 1450,
            },
        );
        s.overlay_device = Some((index, ip("192.0.2.10")));
        s.pins
            .insert(format!("{}_overlay_in", netd_common::VXLAN_DEVICE));
    });
    // Someone else's VXLAN device of another name is not netd's.
    let theirs = bed.fake.add_host_link("vxlan0", "vxlan", None);
    let bed = bed.restart().await;
    let mut s = bed.fake.state();
    assert!(s.link(netd_common::VXLAN_DEVICE).is_none(), "{:?}", s.links);
    assert_eq!(s.overlay_device, None);
    assert!(s.links.remove(&theirs).is_some());
    s.no_shortcut.remove(&theirs);
    assert_eq!(s, good.kernel);
}

/// An upgraded host whose earlier netd (with its `--veth-pool`) crashed
/// keeps that agent's spare veths: the start-up reconcile deletes them as
/// orphans, a marked one (`netd:pool`, with its pins) and one whose
/// creation was cut short before its mark, peers included.
#[tokio::test]
async fn a_restart_removes_the_spare_veths_of_an_earlier_netd() {
    let bed = bed().await;
    let good = bed.snapshot().await;
    let marked = "ns00000000abc";
    bed.fake.with(|s| {
        let veth = |name: &str, peer: &str, owner: Option<&str>, index: u32| Link {
            name: name.into(),
            kind: Kind::Veth {
                peer: peer.into(),
                netns: None,
            },
            up: false,
            master: None,
            owner: owner.map(str::to_string),
            addrs: Vec::new(),
            addrs6: Vec::new(),
            mac: [2, 0, 0, 0, 9, index as u8],
            mtu: 1500,
        };
        for (host, peer, owner) in [
            (marked, "np00000000abc", Some("pool")),
            ("ns00000000def", "np00000000def", None),
        ] {
            let index = s.links.keys().max().unwrap() + 1;
            s.links.insert(index, veth(host, peer, owner, index));
            s.links.insert(index + 1, veth(peer, host, None, index + 1));
        }
        for p in ["from_container", "to_container"] {
            s.pins.insert(format!("{marked}_{p}"));
        }
    });
    let bed = bed.restart().await;
    let repairs = bed.repairs().await;
    for host in [marked, "ns00000000def"] {
        assert!(
            repairs.contains(&format!("deleted orphan link {host}")),
            "{host}: {repairs:?}"
        );
    }
    assert!(
        repairs.contains(&format!("unpinned orphan links of {marked}")),
        "{repairs:?}"
    );
    assert_eq!(bed.snapshot().await, good, "{repairs:?}");
}
