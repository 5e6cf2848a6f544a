//! The spare veth pool on the fake kernel: an add takes a spare (no veth
//! made, no program attached on its path), a failing add deletes the spare
//! it took and leaves nothing else, a spare that fails while being made is
//! cleaned up, the reconcile leaves the pool's spares alone and removes a
//! dead agent's.
use std::collections::BTreeSet;

use futures::{future::BoxFuture, FutureExt};

use super::{Bed, Filler, Snapshot};
use crate::{
    error::AgentResult,
    kernel::fake::{Kind, Link, State},
    schema::{ContainerAdd, NetworkConnect, NetworkCreate, NetworkDisconnect},
};

async fn bed(spares: usize) -> Bed {
    let mut bed = Bed::with_config(|c| c.veth_pool = spares).await;
    bed.network("n1", "10.1.0.0/24").await;
    bed
}

/// The spares' host ends, in the kernel.
fn spares(s: &State) -> BTreeSet<String> {
    s.links
        .values()
        .filter(|l| l.name.starts_with("ns"))
        .map(|l| l.name.clone())
        .collect()
}

/// `before` without the spare `host` (its two ends and its pins): what a
/// failed add that took it must leave.
fn without_spare(mut before: Snapshot, host: &str) -> Snapshot {
    let peer = match &before.kernel.link(host).expect("the spare").kind {
        Kind::Veth { peer, netns: None } => peer.clone(),
        k => panic!("spare {host} is {k:?}"),
    };
    before
        .kernel
        .links
        .retain(|_, l| l.name != host && l.name != peer);
    before
        .kernel
        .pins
        .retain(|p| !p.starts_with(&format!("{host}_")));
    before
}

#[tokio::test]
async fn the_filler_makes_spares_with_their_programs_and_nothing_else() {
    let bed = bed(2).await;
    let before = bed.fake.state();
    let filler = bed.filler().await;
    filler.fill_to(2).await;
    let s = bed.fake.state();
    let made = spares(&s);
    assert_eq!(
        made,
        filler.pool().names().into_iter().collect::<BTreeSet<_>>(),
        "{s:?}"
    );
    assert_eq!(made.len(), 2);
    for host in &made {
        let l: &Link = s.link(host).unwrap();
        assert_eq!(l.owner.as_deref(), Some("pool"), "{l:?}");
        assert!(!l.up && l.master.is_none(), "{l:?}");
        let Kind::Veth { peer, netns: None } = &l.kind else {
            panic!("{l:?}");
        };
        assert!(peer.starts_with("np") && s.link(peer).is_some(), "{peer}");
        for p in ["from_container", "to_container"] {
            assert!(s.pins.contains(&format!("{host}_{p}")), "{host} {p}");
        }
    }
    // Two links and two pins per spare; no map entry.
    assert_eq!(s.links.len(), before.links.len() + 4);
    assert_eq!(s.pins.len(), before.pins.len() + 4);
    assert_eq!(s.endpoints, before.endpoints);
}

#[tokio::test]
async fn an_add_takes_a_spare_and_attaches_nothing_on_its_path() {
    let mut bed = bed(2).await;
    let filler = bed.filler().await;
    filler.fill_to(2).await;
    let taken: Vec<String> = filler.pool().names().into_iter().collect();
    let indexes: Vec<u32> = taken
        .iter()
        .map(|h| bed.fake.state().index_of(h).unwrap())
        .collect();
    bed.fake.count_steps();
    let c = bed.container("c1", "n1", &[]).await;
    let steps = bed.fake.steps();
    assert!(
        !steps
            .iter()
            .any(|s| s.starts_with("create veth") || s.starts_with("attach")),
        "{steps:?}"
    );
    let ep = &c.endpoints[0];
    let s = bed.fake.state();
    let index = s.index_of(&ep.host_ifname).unwrap();
    assert!(indexes.contains(&index), "{index} is not a spare's");
    let host = &s.links[&index];
    let bridge = s.index_of(&bed.state().await.networks.values().next().unwrap().bridge);
    assert_eq!(host.master, bridge);
    assert!(host.up);
    assert_eq!(host.owner.as_deref(), Some(c.id.as_str()));
    assert_eq!(
        host.kind,
        Kind::Veth {
            peer: "eth0".into(),
            netns: Some(c.netns.clone())
        }
    );
    let inside = &s.namespaces[&c.netns].ifaces["eth0"];
    assert!(inside.up && inside.mac == ep.mac(), "{inside:?}");
    // The spare's pins moved to the endpoint's name with it.
    let spare = taken[indexes.iter().position(|i| *i == index).unwrap()].clone();
    assert!(
        !s.pins.iter().any(|p| p.starts_with(&spare)),
        "{:?}",
        s.pins
    );
    for p in ["from_container", "to_container"] {
        assert!(s.pins.contains(&format!("{}_{p}", ep.host_ifname)));
    }
    assert_eq!(s.endpoints[&index].ip, crate::datapath::addr_key(ep.ip));
    assert_eq!(filler.pool().ready(), 1);
    assert!(!filler.pool().names().contains(&spare));
    assert_eq!(bed.check("c1").await, Vec::<String>::new());
    // The filler replaces it once let run.
    filler.fill_to(2).await;
    assert_eq!(spares(&bed.fake.state()).len(), 2);
}

/// Runs `op` (which must take a spare) with each of its steps failing in
/// turn, a fresh spare ready each time: every failure must leave exactly
/// the state before it minus that spare. `undo` takes a success back.
async fn fails_with_a_spare_at_every_step<F, U>(
    bed: &Bed,
    filler: &Filler,
    what: &str,
    op: F,
    undo: U,
) where
    F: Fn() -> BoxFuture<'static, AgentResult<()>>,
    U: Fn() -> BoxFuture<'static, ()>,
{
    filler.fill_to(1).await;
    bed.fake.count_steps();
    op().await
        .unwrap_or_else(|e| panic!("{what} fails without a fault: {e}"));
    let steps = bed.fake.steps();
    assert!(
        steps.iter().any(|s| s.starts_with("hand over")),
        "{what} took no spare: {steps:?}"
    );
    undo().await;
    for (n, step) in steps.iter().enumerate() {
        filler.fill_to(1).await;
        let spare = filler.pool().names().into_iter().next().unwrap();
        let want = without_spare(bed.snapshot().await, &spare);
        bed.fake.fail_at(n as u64 + 1);
        let result = op().await;
        assert!(
            !bed.fake.armed(),
            "{what}: step {} ({step}) never reached",
            n + 1
        );
        assert!(result.is_err(), "{what} succeeded although {step} failed");
        assert_eq!(
            bed.snapshot().await,
            want,
            "{what}: a failed {step} left more than the spare's removal; steps: {:?}",
            bed.fake.steps()
        );
        assert_eq!(filler.pool().ready(), 0, "{what} after {step}");
    }
}

fn add(
    bed: &Bed,
    name: &str,
    network: &str,
    publish: &[&str],
) -> impl Fn() -> BoxFuture<'static, AgentResult<()>> {
    let agent = bed.agent.clone();
    let req = bed.add_request(name, network, publish);
    let (name, netns, network) = (req.name, req.netns, req.network);
    let publish = req.publish;
    move || {
        let agent = agent.clone();
        let req = ContainerAdd {
            name: name.clone(),
            netns: netns.clone(),
            network: network.clone(),
            publish: publish.clone(),
            ..Default::default()
        };
        async move { agent.add_container(req).await.map(drop) }.boxed()
    }
}

fn remove(bed: &Bed, name: &'static str) -> impl Fn() -> BoxFuture<'static, ()> {
    let agent = bed.agent.clone();
    move || {
        let agent = agent.clone();
        async move {
            agent.remove_container(name, false).await.unwrap();
        }
        .boxed()
    }
}

#[tokio::test]
async fn an_add_failing_at_any_step_deletes_the_spare_it_took_and_nothing_else() {
    let bed = bed(1).await;
    let filler = bed.filler().await;
    let op = add(&bed, "c1", "n1", &["8080:80"]);
    fails_with_a_spare_at_every_step(&bed, &filler, "add", op, remove(&bed, "c1")).await;
}

#[tokio::test]
async fn a_dual_stack_add_failing_at_any_step_deletes_its_spare_and_nothing_else() {
    let bed = bed(1).await;
    bed.agent
        .create_network(NetworkCreate {
            name: "v6".into(),
            subnet: Some("10.6.0.0/24".parse().unwrap()),
            ipv6: true,
            subnet6: Some("fd00:6::/64".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let filler = bed.filler().await;
    let op = add(&bed, "c1", "v6", &[]);
    fails_with_a_spare_at_every_step(&bed, &filler, "dual-stack add", op, remove(&bed, "c1")).await;
}

#[tokio::test]
async fn a_connect_failing_at_any_step_deletes_the_spare_it_took_and_nothing_else() {
    let mut bed = bed(1).await;
    bed.network("n2", "10.2.0.0/24").await;
    bed.container("c1", "n1", &["8080:80"]).await;
    let filler = bed.filler().await;
    let agent = bed.agent.clone();
    let connect = move || {
        let agent = agent.clone();
        async move {
            let req = NetworkConnect {
                container: "c1".into(),
                ..Default::default()
            };
            agent.connect("n2", req).await.map(drop)
        }
        .boxed()
    };
    let agent = bed.agent.clone();
    let disconnect = move || {
        let agent = agent.clone();
        async move {
            let req = NetworkDisconnect {
                container: "c1".into(),
                unpublish: false,
            };
            agent.disconnect("n2", req).await.unwrap();
        }
        .boxed()
    };
    fails_with_a_spare_at_every_step(&bed, &filler, "connect", connect, disconnect).await;
}

#[tokio::test]
async fn a_spare_failing_while_being_made_is_cleaned_up_and_made_again() {
    let bed = bed(1).await;
    let before = bed.fake.state();
    let filler = bed.filler().await;
    // create, mark, two attaches.
    for n in 1..=4 {
        bed.fake.fail_at(n);
        filler
            .run_until(&format!("fault {n} taken"), |p| {
                !bed.fake.armed() && p.names().is_empty()
            })
            .await;
        assert_eq!(
            bed.fake.state(),
            before,
            "a spare failing at step {n} left something; steps: {:?}",
            bed.fake.steps()
        );
    }
    // The filler tries again (after a second).
    filler.fill_to(1).await;
    assert_eq!(spares(&bed.fake.state()).len(), 1);
}

#[tokio::test]
async fn the_sweep_leaves_the_pools_spares_and_removes_a_dead_agents() {
    let mut bed = bed(2).await;
    bed.container("c1", "n1", &[]).await;
    let filler = bed.filler().await;
    filler.fill_to(2).await;
    let ours = bed.fake.state();
    assert_eq!(bed.sweep().await, Vec::<String>::new());
    assert_eq!(bed.fake.state(), ours, "the sweep touched the spares");
    // A spare an earlier agent left (marked, with its pins), and one cut
    // short before its mark.
    let orphan = "ns00000000abc";
    bed.fake.with(|s| {
        for (name, peer, owner) in [
            (orphan, "np00000000abc", Some("pool")),
            ("ns00000000def", "np00000000def", None),
        ] {
            let index = s.links.keys().max().unwrap() + 1;
            s.links.insert(
                index,
                Link {
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
                },
            );
            s.links.insert(
                index + 1,
                Link {
                    name: peer.into(),
                    kind: Kind::Veth {
                        peer: name.into(),
                        netns: None,
                    },
                    up: false,
                    master: None,
                    owner: None,
                    addrs: Vec::new(),
                    addrs6: Vec::new(),
                    mac: [2, 0, 0, 0, 9, index as u8 + 1],
                    mtu: 1500,
                },
            );
        }
        for p in ["from_container", "to_container"] {
            s.pins.insert(format!("{orphan}_{p}"));
        }
    });
    let repairs = bed.sweep().await;
    assert!(repairs.iter().any(|r| r.contains(orphan)), "{repairs:?}");
    assert_eq!(bed.fake.state(), ours, "{repairs:?}");
}

#[tokio::test]
async fn a_restart_adopts_a_container_on_a_spare_and_removes_the_old_spares() {
    let mut bed = bed(2).await;
    let filler = bed.filler().await;
    filler.fill_to(2).await;
    let c = bed.container("c1", "n1", &["8080:80"]).await;
    let left: BTreeSet<String> = filler.pool().names().into_iter().collect();
    assert_eq!(left.len(), 1);
    let index = bed.fake.state().index_of(&c.endpoints[0].host_ifname);
    drop(filler);
    // A crash: the new agent does not know the spare the old one kept.
    bed.fake.count_steps();
    let bed = bed.restart().await;
    let steps = bed.fake.steps();
    assert!(!steps.iter().any(|s| s.starts_with("create")), "{steps:?}");
    let s = bed.fake.state();
    assert_eq!(s.index_of(&c.endpoints[0].host_ifname), index, "recreated");
    assert!(spares(&s).is_empty(), "{:?}", spares(&s));
    assert!(!s.links.values().any(|l| l.name.starts_with("np")));
    assert!(
        !s.pins.iter().any(|p| left.iter().any(|h| p.starts_with(h))),
        "{:?}",
        s.pins
    );
    let repairs = bed.repairs().await;
    for h in &left {
        assert!(repairs.iter().any(|r| r.contains(h)), "{h}: {repairs:?}");
    }
    assert_eq!(bed.check("c1").await, Vec::<String>::new());
}
