//! A host cut off from the store keeps forwarding with the view it saved
//! (across a restart too), refuses overlay changes with the reason, and
//! is brought back in line by its next session: what it released while
//! away goes from the store, what changed meanwhile reaches its datapath.
use super::{addr, FakeCluster, Host};
use crate::error::AgentError;

#[tokio::test]
async fn a_cut_off_host_forwards_with_its_saved_view_and_catches_up_after() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let b = Host::start(&store, "b", 2).await;
    a.overlay("ov", None).await.unwrap();
    b.has_network("ov").await;
    let a1 = addr(&a.add("a1", "ov", None).await.unwrap());
    let c1 = addr(&b.add("c1", "ov", None).await.unwrap());
    a.wait_remotes(&[c1], &b).await;
    b.wait_remotes(&[a1], &a).await;

    // Cut off for longer than its lease.
    store.cut_off("a", true);
    a.wait_disconnected().await;
    store.expire_leases_of("a");
    b.wait_remotes(&[], &a).await;
    assert_eq!(a.remotes(), vec![(c1, b.cluster.config.advertise)]);
    let status = a.status().await;
    assert!(!status.reachable);
    assert!(status.last_error.is_some());

    // Changes wait for the store; local ones are made, the store's part
    // is left to the next session.
    for refused in [
        a.overlay("ov2", None).await.map(drop),
        a.add("a2", "ov", None).await.map(drop),
    ] {
        match refused {
            Err(AgentError::Conflict(m)) => assert!(m.contains("cluster store"), "{m}"),
            other => panic!("not refused: {other:?}"),
        }
    }
    a.bed.agent.remove_container("a1", false).await.unwrap();
    assert_eq!(store.view().addresses.len(), 2, "a1's claim waits");

    // Restarted while still cut off, with its datapath's remote
    // endpoints lost: the saved view puts them back.
    a.bed.fake.with(|s| s.remotes.clear());
    let a = a.restart().await;
    assert_eq!(a.remotes(), vec![(c1, b.cluster.config.advertise)]);
    assert!(a.bed.state().await.find_network("ov").is_ok());

    // Meanwhile on b.
    b.bed.agent.remove_container("c1", false).await.unwrap();
    let c3 = addr(&b.add("c3", "ov", None).await.unwrap());

    // Back: a's claim of a1 goes, c3 replaces c1.
    store.cut_off("a", false);
    a.wait_sessions(1).await;
    a.wait_remotes(&[c3], &b).await;
    let view = store.view();
    assert_eq!(
        view.addresses
            .values()
            .map(|c| c.host.as_str())
            .collect::<Vec<_>>(),
        ["b"],
        "{:?}",
        view.addresses
    );
    assert!(a.status().await.reachable);
    // And changes work again.
    let a2 = addr(&a.add("a2", "ov", None).await.unwrap());
    b.wait_remotes(&[a2], &a).await;
}
