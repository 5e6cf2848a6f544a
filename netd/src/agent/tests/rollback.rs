//! Every step of a multi-step operation failing in turn: the operation
//! reports the error and the kernel, the agent and the store are exactly
//! as before it.
use futures::FutureExt;

use super::{fails_cleanly_at_every_step, Bed};
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

#[tokio::test]
async fn network_create_rolls_back_at_every_step() {
    let mut bed = Bed::new().await;
    let steps = fails_cleanly_at_every_step(
        &mut bed,
        "network create",
        NETWORK_COMMITTED,
        |bed| {
            async move {
                bed.agent
                    .create_network(NetworkCreate {
                        name: "n1".into(),
                        subnet: Some("10.1.0.0/24".parse().unwrap()),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
            .boxed()
        },
        |bed| async move { bed.agent.remove_network("n1").await.map(drop).unwrap() }.boxed(),
    )
    .await;
    // The bridge, its mark, address and state, then the datapath entry.
    assert!(steps.len() >= 5, "{steps:?}");
}

#[tokio::test]
async fn container_add_rolls_back_at_every_step() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    let ns = bed.netns("c1");
    let steps = fails_cleanly_at_every_step(
        &mut bed,
        "container add",
        &[],
        |bed| {
            let req = add("c1", &ns, "n1", &["8080:80", "127.0.0.1:5353:53/udp", "90"]);
            async move { bed.agent.add_container(req).await.map(drop) }.boxed()
        },
        |bed| {
            async move {
                bed.agent.remove_container("c1", false).await.unwrap();
            }
            .boxed()
        },
    )
    .await;
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
    fails_cleanly_at_every_step(
        &mut bed,
        "container add on n2",
        &[],
        |bed| {
            let req = add("c1", &ns, "n2", &["8080:80"]);
            async move { bed.agent.add_container(req).await.map(drop) }.boxed()
        },
        |bed| {
            async move {
                bed.agent.remove_container("c1", false).await.unwrap();
            }
            .boxed()
        },
    )
    .await;
}

#[tokio::test]
async fn connect_rolls_back_at_every_step() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.network("n2", "10.2.0.0/24").await;
    bed.container("c1", "n1", &["8080:80"]).await;
    let steps = fails_cleanly_at_every_step(
        &mut bed,
        "connect",
        &[],
        |bed| {
            async move {
                let req = NetworkConnect {
                    container: "c1".into(),
                    aliases: vec!["web".into()],
                    ..Default::default()
                };
                bed.agent.connect("n2", req).await.map(drop)
            }
            .boxed()
        },
        |bed| {
            async move {
                let req = NetworkDisconnect {
                    container: "c1".into(),
                    unpublish: false,
                };
                bed.agent.disconnect("n2", req).await.unwrap();
            }
            .boxed()
        },
    )
    .await;
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
    fails_cleanly_at_every_step(
        &mut bed,
        "container add --network none",
        &[],
        |bed| {
            let req = add("c1", &ns, "none", &[]);
            async move { bed.agent.add_container(req).await.map(drop) }.boxed()
        },
        |bed| {
            async move {
                bed.agent.remove_container("c1", false).await.unwrap();
            }
            .boxed()
        },
    )
    .await;
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
    let before_add = bed.snapshot().await;
    bed.container("c1", "n1", &["8080:80", "5353:53/udp"]).await;
    bed.fake.count_steps();
    bed.agent.remove_container("c1", false).await.unwrap();
    let steps = bed.fake.steps();
    assert_eq!(
        bed.snapshot().await,
        before_add,
        "remove left something behind"
    );
    for (n, step) in steps.iter().enumerate() {
        bed.container("c1", "n1", &["8080:80", "5353:53/udp"]).await;
        let added = bed.snapshot().await;
        bed.fake.fail_at(n as u64 + 1);
        let result = bed.agent.remove_container("c1", false).await;
        assert!(!bed.fake.armed(), "remove never reached {step}");
        if result.is_err() {
            let snap = bed.snapshot().await;
            assert!(
                snap.stored_containers.iter().any(|c| c.name == "c1"),
                "remove failing at {step} forgot c1"
            );
            assert_eq!(
                snap.held, added.held,
                "remove failing at {step} let go of host ports it still claims"
            );
            assert_eq!(
                snap.kernel.published, added.kernel.published,
                "remove failing at {step} unpublished ports it still claims"
            );
            bed.sweep().await;
            let problems = bed.check("c1").await;
            assert!(
                problems.is_empty(),
                "after {step} and a sweep: {problems:?}"
            );
            bed.agent
                .remove_container("c1", false)
                .await
                .unwrap_or_else(|e| panic!("second remove after {step}: {e}"));
        } else {
            bed.sweep().await;
        }
        assert_eq!(
            bed.snapshot().await,
            before_add,
            "remove failing at step {} ({step}) left something behind",
            n + 1
        );
    }
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
    let steps = fails_cleanly_at_every_step(
        &mut bed,
        "dual-stack network create",
        NETWORK_COMMITTED,
        |bed| {
            let req = create("v6");
            async move { bed.agent.create_network(req).await.map(drop) }.boxed()
        },
        |bed| async move { bed.agent.remove_network("v6").await.map(drop).unwrap() }.boxed(),
    )
    .await;
    assert!(
        steps.iter().any(|s| s.starts_with("address fd00:6::1/64")),
        "{steps:?}"
    );
    bed.agent.create_network(create("v6")).await.unwrap();
    bed.network("v4", "10.7.0.0/24").await;
    let ns = bed.netns("c1");
    let steps = fails_cleanly_at_every_step(
        &mut bed,
        "dual-stack container add",
        &[],
        |bed| {
            let req = add("c1", &ns, "v6", &[]);
            async move { bed.agent.add_container(req).await.map(drop) }.boxed()
        },
        |bed| {
            async move {
                bed.agent.remove_container("c1", false).await.unwrap();
            }
            .boxed()
        },
    )
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
    fails_cleanly_at_every_step(
        &mut bed,
        "connect to an IPv4 network",
        &[],
        |bed| {
            async move {
                let req = NetworkConnect {
                    container: "c1".into(),
                    ..Default::default()
                };
                bed.agent.connect("v4", req).await.map(drop)
            }
            .boxed()
        },
        |bed| {
            async move {
                let req = NetworkDisconnect {
                    container: "c1".into(),
                    unpublish: false,
                };
                bed.agent.disconnect("v4", req).await.unwrap();
            }
            .boxed()
        },
    )
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
    let connect = |bed: &Bed| {
        let agent = bed.agent.clone();
        async move {
            let req = NetworkConnect {
                container: "c1".into(),
                ..Default::default()
            };
            agent.connect("n2", req).await.unwrap();
        }
    };
    let disconnect = |bed: &Bed| {
        let agent = bed.agent.clone();
        async move {
            let req = NetworkDisconnect {
                container: "c1".into(),
                unpublish: false,
            };
            agent.disconnect("n2", req).await
        }
    };
    let before = bed.snapshot().await;
    connect(&bed).await;
    bed.fake.count_steps();
    disconnect(&bed).await.unwrap();
    let steps = bed.fake.steps();
    assert!(steps.len() >= 2, "{steps:?}");
    assert_eq!(bed.snapshot().await, before, "disconnect left something");
    for (n, step) in steps.iter().enumerate() {
        connect(&bed).await;
        bed.fake.fail_at(n as u64 + 1);
        let result = disconnect(&bed).await;
        assert!(!bed.fake.armed(), "disconnect never reached {step}");
        assert!(
            result.is_err(),
            "disconnect succeeded although {step} failed"
        );
        let snap = bed.snapshot().await;
        let c1 = snap.stored_containers.iter().find(|c| c.name == "c1");
        assert_eq!(
            c1.map(|c| c.endpoints.len()),
            Some(2),
            "disconnect failing at {step} forgot the endpoint"
        );
        assert_eq!(snap.kernel.published, before.kernel.published, "{step}");
        assert_eq!(snap.held, before.held, "{step}");
        bed.sweep().await;
        assert_eq!(bed.check("c1").await, Vec::<String>::new(), "{step}");
        disconnect(&bed)
            .await
            .unwrap_or_else(|e| panic!("second disconnect after {step}: {e}"));
        assert_eq!(
            bed.snapshot().await,
            before,
            "disconnect failing at step {} ({step}) left something behind",
            n + 1
        );
    }
}
