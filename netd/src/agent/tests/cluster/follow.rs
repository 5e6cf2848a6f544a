//! Following the store: a host whose lease ends leaves the others' view
//! (its endpoints with it) and comes back with its next session; a watch
//! that breaks is followed by a new session whose snapshot brings what
//! the watch missed.
use super::{addr, FakeCluster, Host};
use crate::cluster::fake::Request;

#[tokio::test]
async fn an_ended_lease_takes_the_hosts_endpoints_out_of_the_others_view() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let b = Host::start(&store, "b", 2).await;
    a.overlay("ov", None).await.unwrap();
    b.has_network("ov").await;
    let c1 = addr(&b.add("c1", "ov", None).await.unwrap());
    a.wait_remotes(&[c1], &b).await;

    // b is cut off for longer than its lease: its host record and its
    // endpoints go; its address claim stays (no one else may take it).
    store.cut_off("b", true);
    b.wait_disconnected().await;
    store.expire_leases_of("b");
    a.wait_remotes(&[], &b).await;
    let status = a.status().await;
    assert_eq!(
        status
            .hosts
            .iter()
            .map(|h| h.id.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert!(status.remote_endpoints.is_empty());
    assert_eq!(store.view().addresses.len(), 1);
    // b forwarded on with what it knew.
    assert_eq!(b.bed.state().await.containers.len(), 1);

    // Back: a new session publishes c1 again, on the new lease.
    store.cut_off("b", false);
    b.wait_sessions(2).await;
    a.wait_remotes(&[c1], &b).await;
    assert_eq!(a.session().sessions, 1, "a's session never broke");
}

#[tokio::test]
async fn after_a_watch_breaks_a_new_snapshot_brings_what_it_missed() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let b = Host::start(&store, "b", 2).await;
    a.overlay("ov", None).await.unwrap();
    b.has_network("ov").await;
    let c1 = addr(&b.add("c1", "ov", None).await.unwrap());
    a.wait_remotes(&[c1], &b).await;
    let snapshots = store.served("a", Request::Snapshot);

    // a's watch breaks; what happens before a's next session reaches it
    // only through that session's snapshot.
    store.drop_watches("a");
    b.bed.agent.remove_container("c1", false).await.unwrap();
    let c2 = addr(&b.add("c2", "ov", None).await.unwrap());
    b.overlay("ov2", None).await.unwrap();
    a.wait_sessions(2).await;
    a.wait_remotes(&[c2], &b).await;
    a.has_network("ov2").await;
    assert!(store.served("a", Request::Snapshot) > snapshots);
    // And it follows again from there.
    let c3 = addr(&b.add("c3", "ov", None).await.unwrap());
    a.wait_remotes(&[c2, c3], &b).await;
}
