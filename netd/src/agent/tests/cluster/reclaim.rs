//! `--cluster-reclaim-after`: the address claims of a host away that long
//! are given back by the others, and another container may take them;
//! when that host returns it reports what it could not publish again.
//! Without it (0: never), a claim waits for its host however long.
use std::time::Duration;

use super::{addr, ip, FakeCluster, Host};
use crate::error::AgentError;

/// `a` and `b` on overlay network `ov`; `b` runs c1 at 10.0.0.5 and c2,
/// then is cut off for longer than its lease.
async fn b_away(store: &FakeCluster, reclaim_after: Option<Duration>) -> (Host, Host) {
    let a = Host::start_with(store, "a", 1, |c| c.reclaim_after = reclaim_after).await;
    a.wait_sessions(1).await;
    let b = Host::start(store, "b", 2).await;
    a.overlay("ov", Some("10.0.0.0/24")).await.unwrap();
    b.has_network("ov").await;
    a.add("a1", "ov", None).await.unwrap();
    b.add("c1", "ov", Some("10.0.0.5")).await.unwrap();
    b.add("c2", "ov", None).await.unwrap();
    store.cut_off("b", true);
    b.wait_disconnected().await;
    store.expire_leases_of("b");
    (a, b)
}

#[tokio::test]
async fn claims_of_a_host_away_too_long_are_given_back() {
    let store = FakeCluster::new();
    let (a, b) = b_away(&store, Some(Duration::from_millis(1))).await;
    super::eventually("b's claims given back", || async {
        store.view().addresses.values().all(|c| c.host == "a")
    })
    .await;
    // a's own claim stays.
    assert_eq!(store.view().addresses.len(), 1);
    let taken = a.add("a5", "ov", Some("10.0.0.5")).await.unwrap();
    assert_eq!(addr(&taken), ip("10.0.0.5"));

    // b comes back: c2's address is free, it is published again; c1's is
    // a5's now, and b says so.
    store.cut_off("b", false);
    b.wait_sessions(2).await;
    let c2 = addr(&b.bed.find("c2").await);
    a.wait_remotes(&[c2], &b).await;
    let status = b.status().await;
    assert_eq!(status.conflicts.len(), 1, "{:?}", status.conflicts);
    assert!(
        status.conflicts[0].contains("c1") && status.conflicts[0].contains("10.0.0.5"),
        "{:?}",
        status.conflicts
    );
    let claims = store.view().addresses;
    assert_eq!(claims.len(), 3, "{claims:?}");
}

#[tokio::test]
async fn without_reclaim_a_claim_waits_for_its_host() {
    let store = FakeCluster::new();
    let (a, b) = b_away(&store, None).await;
    a.wait_remotes(&[], &b).await;
    match a.add("a5", "ov", Some("10.0.0.5")).await {
        Err(AgentError::Conflict(m)) => assert!(m.contains("10.0.0.5 is already in use"), "{m}"),
        other => panic!("10.0.0.5 is b's: {other:?}"),
    }
    assert_eq!(store.view().addresses.len(), 3);
    store.cut_off("b", false);
    b.wait_sessions(2).await;
    assert_eq!(b.status().await.conflicts, Vec::<String>::new());
}
