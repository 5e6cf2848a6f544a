//! What the overlay code refuses, and why: no store, no session yet, a
//! name or subnet another host has, an address another host holds, a
//! network with containers on another host, a network this host cannot
//! realise.
use super::{addr, ip, FakeCluster, Host};
use crate::{agent::tests::Bed, error::AgentError, schema::NetworkCreate};

/// The message of a conflict (fails on anything else).
fn conflict<T: std::fmt::Debug>(r: crate::error::AgentResult<T>) -> String {
    match r {
        Err(AgentError::Conflict(m)) => m,
        other => panic!("not a conflict: {other:?}"),
    }
}

#[tokio::test]
async fn overlay_networks_need_a_cluster_store() {
    let bed = Bed::new().await;
    let r = bed
        .agent
        .create_network(NetworkCreate {
            name: "ov".into(),
            driver: Some("overlay".into()),
            ..Default::default()
        })
        .await;
    match r {
        Err(AgentError::Invalid(m)) => assert!(m.contains("--cluster-store"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nothing_is_changed_before_the_first_session() {
    let store = FakeCluster::new();
    store.cut_off("a", true);
    let a = Host::start_with(&store, "a", 1, |_| {}).await;
    let m = conflict(a.overlay("ov", None).await);
    assert!(
        m.contains("unreachable") && m.contains("not connected yet"),
        "{m}"
    );
    assert!(store.view().networks.is_empty());
    store.cut_off("a", false);
    a.wait_sessions(1).await;
    a.overlay("ov", None).await.unwrap();
}

#[tokio::test]
async fn a_name_or_a_subnet_another_host_has_is_refused() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let mut b = Host::start(&store, "b", 2).await;
    // b does not follow: only the store knows what a made.
    b.stop_following().await;
    a.overlay("ov", Some("10.5.0.0/24")).await.unwrap();
    let m = conflict(b.overlay("ov", None).await);
    assert!(m.contains("already exists in the cluster"), "{m}");
    let m = conflict(b.overlay("ov2", Some("10.5.0.0/16")).await);
    assert!(m.contains("overlaps overlay network ov"), "{m}");
    assert!(b.bed.state().await.networks.is_empty());
    assert_eq!(store.view().networks.len(), 1);
}

#[tokio::test]
async fn an_address_another_host_holds_is_refused() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let b = Host::start(&store, "b", 2).await;
    a.overlay("ov", Some("10.0.0.0/24")).await.unwrap();
    b.has_network("ov").await;
    assert_eq!(
        addr(&b.add("c1", "ov", Some("10.0.0.5")).await.unwrap()),
        ip("10.0.0.5")
    );
    let before = a.bed.snapshot().await;
    let m = conflict(a.add("a1", "ov", Some("10.0.0.5")).await);
    assert!(m.contains("10.0.0.5 is already in use"), "{m}");
    let mut after = a.bed.snapshot().await;
    after
        .kernel
        .namespaces
        .retain(|p, _| before.kernel.namespaces.contains_key(p));
    assert_eq!(after, before);
    assert_eq!(store.view().addresses.len(), 1);
}

#[tokio::test]
async fn a_network_with_containers_on_another_host_stays() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let b = Host::start(&store, "b", 2).await;
    a.overlay("ov", None).await.unwrap();
    b.has_network("ov").await;
    b.add("c1", "ov", None).await.unwrap();
    let m = conflict(a.bed.agent.remove_network("ov").await);
    assert!(m.contains("c1 on host-b"), "{m}");
    assert_eq!(store.view().networks.len(), 1);
    assert!(a.bed.state().await.find_network("ov").is_ok());
    // Once c1 is gone, it goes everywhere.
    b.bed.agent.remove_container("c1", false).await.unwrap();
    a.caught_up().await;
    a.bed.agent.remove_network("ov").await.unwrap();
    super::eventually("b removes ov", || async {
        b.bed.state().await.find_network("ov").is_err()
    })
    .await;
    assert!(store.view().networks.is_empty());
}

#[tokio::test]
async fn a_host_with_a_network_of_that_name_does_not_realise_it() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let mut b = Host::start(&store, "b", 2).await;
    let bridge = b.bed.network("ov", "10.9.0.0/24").await;
    a.overlay("ov", None).await.unwrap();
    b.caught_up().await;
    let conflicts = b.status().await.conflicts;
    assert!(
        conflicts.len() == 1 && conflicts[0].contains("this host has a network named ov already"),
        "{conflicts:?}"
    );
    assert_eq!(b.bed.state().await.find_network("ov").unwrap(), &bridge);
}
