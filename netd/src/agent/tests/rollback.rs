//! Every step of a multi-step operation failing in turn: the operation
//! reports the error and the kernel, the agent and the store are exactly
//! as before it.
use futures::FutureExt;

use super::{fails_cleanly_at_every_step, Bed, Snapshot};
use crate::schema::{ContainerAdd, NetworkConnect, NetworkCreate, NetworkDisconnect};

/// Steps after which `network create` has committed (host address sync
/// failures are logged; the next sweep retries them).
const NETWORK_COMMITTED: &[&str] = &[
    "set host addresses",
    "set host IPv6 addresses",
    "set no-shortcut devices",
];

fn add(name: &str, netns: &std::path::Path, network: &str, publish: &[&str]) -> ContainerAdd {
    ContainerAdd {
        name: name.into(),
        netns: netns.to_path_buf(),
        network: Some(network.into()),
        publish: publish.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

/// [`fails_cleanly_at_every_step`] for `network create` of `req()`,
/// undone by removing that network.
async fn create_fails_cleanly(
    bed: &mut Bed,
    what: &str,
    req: impl Fn() -> NetworkCreate,
) -> Vec<String> {
    fails_cleanly_at_every_step(
        bed,
        what,
        NETWORK_COMMITTED,
        |bed| {
            let req = req();
            async move { bed.agent.create_network(req).await.map(drop) }.boxed()
        },
        |bed| {
            let name = req().name;
            async move { bed.agent.remove_network(&name).await.map(drop).unwrap() }.boxed()
        },
    )
    .await
}

/// [`fails_cleanly_at_every_step`] for `container add` of `req()`, undone
/// by removing that container.
async fn add_fails_cleanly(
    bed: &mut Bed,
    what: &str,
    req: impl Fn() -> ContainerAdd,
) -> Vec<String> {
    fails_cleanly_at_every_step(
        bed,
        what,
        &[],
        |bed| {
            let req = req();
            async move { bed.agent.add_container(req).await.map(drop) }.boxed()
        },
        |bed| {
            let name = req().name;
            async move {
                bed.agent
                    .remove_container(&name, false)
                    .await
                    .map(drop)
                    .unwrap()
            }
            .boxed()
        },
    )
    .await
}

/// [`fails_cleanly_at_every_step`] for connecting `req()` to `network`,
/// undone by disconnecting it.
async fn connect_fails_cleanly(
    bed: &mut Bed,
    what: &str,
    network: &str,
    req: impl Fn() -> NetworkConnect,
) -> Vec<String> {
    fails_cleanly_at_every_step(
        bed,
        what,
        &[],
        |bed| {
            let (network, req) = (network.to_string(), req());
            async move { bed.agent.connect(&network, req).await.map(drop) }.boxed()
        },
        |bed| {
            let network = network.to_string();
            let req = NetworkDisconnect {
                container: req().container,
                unpublish: false,
            };
            async move { bed.agent.disconnect(&network, req).await.map(drop).unwrap() }.boxed()
        },
    )
    .await
}

fn connect(container: &str, aliases: &[&str]) -> NetworkConnect {
    NetworkConnect {
        container: container.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn network_create_rolls_back_at_every_step() {
    let mut bed = Bed::new().await;
    let steps = create_fails_cleanly(&mut bed, "network create", || NetworkCreate {
        name: "n1".into(),
        subnet: Some("10.1.0.0/24".parse().unwrap()),
        ..Default::default()
    })
    .await;
    // The bridge, its mark, address and state, then the datapath entry.
    assert!(steps.len() >= 5, "{steps:?}");
}

#[tokio::test]
async fn container_add_rolls_back_at_every_step() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    let ns = bed.netns("c1");
    let publish = ["8080:80", "127.0.0.1:5353:53/udp", "90"];
    let steps =
        add_fails_cleanly(&mut bed, "container add", || add("c1", &ns, "n1", &publish)).await;
    // veth, address, up, lo, route, entry, 2 programs, up, 3 holds, 3
    // publishes.
    assert!(steps.len() >= 15, "{steps:?}");
    let count = |p: &str| steps.iter().filter(|s| s.starts_with(p)).count();
    assert_eq!((count("hold "), count("publish ")), (3, 3), "{steps:?}");
}

#[tokio::test]
async fn container_add_on_a_second_network_rolls_back_at_every_step() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.network("n2", "10.2.0.0/24").await;
    bed.container("other", "n2", &[]).await;
    let ns = bed.netns("c1");
    add_fails_cleanly(&mut bed, "container add on n2", || {
        add("c1", &ns, "n2", &["8080:80"])
    })
    .await;
}

#[tokio::test]
async fn connect_rolls_back_at_every_step() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.network("n2", "10.2.0.0/24").await;
    bed.container("c1", "n1", &["8080:80"]).await;
    let steps = connect_fails_cleanly(&mut bed, "connect", "n2", || connect("c1", &["web"])).await;
    // No default route on a second network: veth, address, up, lo, entry,
    // 2 programs, up.
    assert!(steps.len() >= 7, "{steps:?}");
    assert!(
        !steps.iter().any(|s| s.starts_with("default route")),
        "{steps:?}"
    );
}

#[tokio::test]
async fn container_add_in_none_mode_rolls_back() {
    let mut bed = Bed::new().await;
    let ns = bed.netns("c1");
    add_fails_cleanly(&mut bed, "container add --network none", || {
        add("c1", &ns, "none", &[])
    })
    .await;
}

type Step<'a, T> = futures::future::BoxFuture<'a, T>;

/// Fails `op` (run on c1 after `redo`) at each of its steps in turn. A
/// failed `op` keeps c1 (`kept` holds for the snapshot), its published
/// and held host ports; the next sweep leaves c1 consistent and a second
/// `op` succeeds. An `op` that succeeds anyway (`may_succeed`: the failed
/// step was only logged) leaves an orphan the sweep removes. Either way
/// it ends at `before`; returns the steps of an unfailed `op`.
async fn loses_nothing_at_every_step<R, O>(
    bed: &mut Bed,
    what: &str,
    may_succeed: bool,
    kept: impl Fn(&Snapshot) -> bool,
    mut redo: R,
    mut op: O,
) -> Vec<String>
where
    R: for<'a> FnMut(&'a mut Bed) -> Step<'a, ()>,
    O: for<'a> FnMut(&'a mut Bed) -> Step<'a, crate::error::AgentResult<()>>,
{
    let before = bed.snapshot().await;
    redo(bed).await;
    bed.fake.count_steps();
    op(bed).await.unwrap();
    let steps = bed.fake.steps();
    assert_eq!(bed.snapshot().await, before, "{what} left something behind");
    for (n, step) in steps.iter().enumerate() {
        redo(bed).await;
        let added = bed.snapshot().await;
        bed.fake.fail_at(n as u64 + 1);
        let result = op(bed).await;
        assert!(!bed.fake.armed(), "{what} never reached {step}");
        assert!(
            may_succeed || result.is_err(),
            "{what} succeeded although {step} failed"
        );
        if result.is_err() {
            let snap = bed.snapshot().await;
            assert!(kept(&snap), "{what} failing at {step} forgot c1's state");
            assert_eq!(
                snap.held, added.held,
                "{what} failing at {step} let go of host ports it still claims"
            );
            assert_eq!(
                snap.kernel.published, added.kernel.published,
                "{what} failing at {step} unpublished ports it still claims"
            );
            bed.sweep().await;
            let problems = bed.check("c1").await;
            assert!(
                problems.is_empty(),
                "after {step} and a sweep: {problems:?}"
            );
            op(bed)
                .await
                .unwrap_or_else(|e| panic!("second {what} after {step}: {e}"));
        } else {
            bed.sweep().await;
        }
        assert_eq!(
            bed.snapshot().await,
            before,
            "{what} failing at step {} ({step}) left something behind",
            n + 1
        );
    }
    steps
}

/// A remove that fails half-way keeps the container (stored, its ports
/// published and held); a step whose failure is only logged leaves an
/// orphan. Either way the next sweep (and a second remove) end where an
/// unfailed remove ends.
#[tokio::test]
async fn container_remove_failing_at_any_step_loses_nothing() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.container("keep", "n1", &["9090:90"]).await;
    bed.netns("c1");
    loses_nothing_at_every_step(
        &mut bed,
        "remove",
        true,
        |snap| snap.stored_containers.iter().any(|c| c.name == "c1"),
        |bed| {
            async move {
                bed.container("c1", "n1", &["8080:80", "5353:53/udp"]).await;
            }
            .boxed()
        },
        |bed| async move { bed.agent.remove_container("c1", false).await.map(drop) }.boxed(),
    )
    .await;
}

/// Network remove changes the store first; a kernel step failing after it
/// leaves an orphan that the next sweep removes.
#[tokio::test]
async fn network_remove_failing_leaves_only_what_the_sweep_removes() {
    let mut bed = Bed::new().await;
    let before = bed.snapshot().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.fake.count_steps();
    bed.agent.remove_network("n1").await.unwrap();
    let steps = bed.fake.steps();
    assert_eq!(bed.snapshot().await, before);
    for n in 1..=steps.len() {
        bed.network("n1", "10.1.0.0/24").await;
        bed.fake.fail_at(n as u64);
        let _ = bed.agent.remove_network("n1").await;
        if bed.state().await.networks.values().any(|x| x.name == "n1") {
            bed.agent.remove_network("n1").await.unwrap();
        }
        bed.sweep().await;
        assert_eq!(
            bed.snapshot().await,
            before,
            "network remove failing at step {n} ({}) left something behind",
            steps[n - 1]
        );
    }
}

#[tokio::test]
async fn dual_stack_network_create_and_container_add_roll_back_at_every_step() {
    let mut bed = Bed::new().await;
    let create = |name: &str| NetworkCreate {
        name: name.into(),
        subnet: Some("10.6.0.0/24".parse().unwrap()),
        ipv6: true,
        subnet6: Some("fd00:6::/64".parse().unwrap()),
        ..Default::default()
    };
    let steps = create_fails_cleanly(&mut bed, "dual-stack network create", || create("v6")).await;
    assert!(
        steps.iter().any(|s| s.starts_with("address fd00:6::1/64")),
        "{steps:?}"
    );
    bed.agent.create_network(create("v6")).await.unwrap();
    bed.network("v4", "10.7.0.0/24").await;
    let ns = bed.netns("c1");
    let steps = add_fails_cleanly(&mut bed, "dual-stack container add", || {
        add("c1", &ns, "v6", &[])
    })
    .await;
    assert!(
        steps.iter().any(|s| s.starts_with("IPv6 default route")),
        "{steps:?}"
    );
    // A second network without IPv6 after it: connect and roll back.
    bed.agent
        .add_container(add("c1", &ns, "v6", &[]))
        .await
        .unwrap();
    connect_fails_cleanly(&mut bed, "connect to an IPv4 network", "v4", || {
        connect("c1", &[])
    })
    .await;
}

/// A disconnect that fails half-way keeps the endpoint in the store; the
/// next sweep puts back what went, and a second disconnect ends where an
/// unfailed one ends.
#[tokio::test]
async fn disconnect_failing_at_any_step_loses_nothing() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.network("n2", "10.2.0.0/24").await;
    bed.container("c1", "n1", &["8080:80"]).await;
    let steps = loses_nothing_at_every_step(
        &mut bed,
        "disconnect",
        false,
        |snap| {
            let c1 = snap.stored_containers.iter().find(|c| c.name == "c1");
            c1.map(|c| c.endpoints.len()) == Some(2)
        },
        |bed| {
            async move {
                let req = connect("c1", &[]);
                bed.agent.connect("n2", req).await.unwrap();
            }
            .boxed()
        },
        |bed| {
            async move {
                let req = NetworkDisconnect {
                    container: "c1".into(),
                    unpublish: false,
                };
                bed.agent.disconnect("n2", req).await.map(drop)
            }
            .boxed()
        },
    )
    .await;
    assert!(steps.len() >= 2, "{steps:?}");
}
