//! A container add or connect on an overlay network failing at any
//! kernel step after its address was claimed in the cluster store: the
//! claim and the endpoint go back, no other host ever keeps forwarding to
//! it, and the host is as it was (`fails_cleanly_at_every_step`).
use futures::FutureExt;

use super::{FakeCluster, Host};
use crate::{
    agent::tests::fails_cleanly_at_every_step,
    schema::{NetworkConnect, NetworkDisconnect},
};

/// Fails unless the store holds no address claim and no endpoint (the
/// tests' only overlay container is the one that failed).
fn nothing_claimed(store: &FakeCluster, what: &str) {
    let view = store.view();
    assert!(
        view.addresses.is_empty() && view.endpoints.is_empty(),
        "{what} left claims {:?} and endpoints {:?} in the store",
        view.addresses,
        view.endpoints
    );
}

#[tokio::test]
async fn a_failed_overlay_add_gives_its_address_back_at_every_step() {
    let store = FakeCluster::new();
    let mut a = Host::start(&store, "a", 1).await;
    let b = Host::start(&store, "b", 2).await;
    a.overlay("ov", None).await.unwrap();
    b.has_network("ov").await;
    let ns = a.bed.netns("c1");
    let steps = fails_cleanly_at_every_step(
        &mut a.bed,
        "overlay container add",
        &[],
        |bed| {
            let req = crate::schema::ContainerAdd {
                name: "c1".into(),
                netns: ns.clone(),
                network: Some("ov".into()),
                ..Default::default()
            };
            let store = store.clone();
            async move {
                let r = bed.agent.add_container(req).await.map(drop);
                if r.is_err() {
                    nothing_claimed(&store, "a failed add");
                }
                r
            }
            .boxed()
        },
        |bed| {
            async move {
                bed.agent.remove_container("c1", false).await.unwrap();
            }
            .boxed()
        },
    )
    .await;
    assert!(steps.len() >= 7, "{steps:?}");
    b.caught_up().await;
    assert_eq!(b.remotes(), vec![]);
    nothing_claimed(&store, "add, remove");
}

#[tokio::test]
async fn a_failed_overlay_connect_gives_its_address_back_at_every_step() {
    let store = FakeCluster::new();
    let mut a = Host::start(&store, "a", 1).await;
    a.overlay("ov", None).await.unwrap();
    a.bed.network("n1", "10.1.0.0/24").await;
    a.bed.container("c1", "n1", &[]).await;
    fails_cleanly_at_every_step(
        &mut a.bed,
        "overlay connect",
        &[],
        |bed| {
            let store = store.clone();
            async move {
                let req = NetworkConnect {
                    container: "c1".into(),
                    ..Default::default()
                };
                let r = bed.agent.connect("ov", req).await.map(drop);
                if r.is_err() {
                    nothing_claimed(&store, "a failed connect");
                }
                r
            }
            .boxed()
        },
        |bed| {
            async move {
                let req = NetworkDisconnect {
                    container: "c1".into(),
                    unpublish: false,
                };
                bed.agent.disconnect("ov", req).await.unwrap();
            }
            .boxed()
        },
    )
    .await;
    nothing_claimed(&store, "connect, disconnect");
}
