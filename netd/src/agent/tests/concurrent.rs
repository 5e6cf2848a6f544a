//! Concurrent requests on one agent (phased operations interleave at
//! their kernel steps, here at the programs' attach on a blocking
//! thread): no address, subnet, name or port is handed out twice, and
//! what loses a race changes nothing.
use futures::future::join_all;

use super::Bed;
use crate::{
    error::AgentError,
    schema::{ContainerAdd, NetworkCreate},
};

const N: usize = 12;

fn names() -> Vec<String> {
    (0..N).map(|i| format!("c{i}")).collect()
}

#[tokio::test]
async fn concurrent_adds_get_distinct_addresses_and_ports() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    let reqs: Vec<ContainerAdd> = names()
        .iter()
        .map(|n| bed.add_request(n, "n1", &["80"]))
        .collect();
    let added = join_all(reqs.into_iter().map(|r| bed.agent.add_container(r))).await;
    let added: Vec<_> = added
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let mut ips: Vec<_> = added.iter().map(|c| c.endpoints[0].ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), N, "{ips:?}");
    let mut ports: Vec<_> = added.iter().map(|c| c.ports[0].host_port).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), N, "{ports:?}");
    let s = bed.fake.state();
    assert_eq!(s.endpoints.len(), N);
    assert_eq!(s.published.len(), N);
    assert_eq!(s.held_ports.len(), N);
    for n in names() {
        assert_eq!(bed.check(&n).await, Vec::<String>::new(), "{n}");
    }
    assert!(bed.state().await.claimed().is_empty());
}

#[tokio::test]
async fn concurrent_network_creates_get_distinct_subnets() {
    let bed = Bed::new().await;
    let reqs = (0..6).map(|i| NetworkCreate {
        name: format!("n{i}"),
        ..Default::default()
    });
    let made = join_all(reqs.map(|r| bed.agent.create_network(r))).await;
    let mut subnets: Vec<_> = made
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")).subnet)
        .collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 6, "{subnets:?}");
    assert_eq!(bed.fake.state().networks.len(), 6);
}

/// Of adds racing for one name (or one host port), one wins; the others
/// are refused as conflicts and leave nothing.
#[tokio::test]
async fn of_adds_racing_for_a_name_or_a_port_one_wins() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    let before = bed.snapshot().await;
    let same_name: Vec<ContainerAdd> = (0..4)
        .map(|i| ContainerAdd {
            netns: bed.netns(&format!("ns{i}")),
            ..bed.add_request("dup", "n1", &[])
        })
        .collect();
    let results = join_all(same_name.into_iter().map(|r| bed.agent.add_container(r))).await;
    let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, AgentError::Conflict(_))),
        "{results:?}"
    );
    assert_eq!(bed.fake.state().endpoints.len(), 1);
    bed.agent.remove_container("dup", false).await.unwrap();
    let same_port: Vec<ContainerAdd> = (0..4)
        .map(|i| bed.add_request(&format!("p{i}"), "n1", &["8080:80"]))
        .collect();
    let results = join_all(same_port.into_iter().map(|r| bed.agent.add_container(r))).await;
    let won: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    let s = bed.fake.state();
    assert_eq!((s.endpoints.len(), s.published.len()), (1, 1));
    bed.agent.remove_container(&won[0], false).await.unwrap();
    // The netns made for the losers stay (they are the runtime's).
    let mut after = bed.snapshot().await;
    after
        .kernel
        .namespaces
        .retain(|p, _| before.kernel.namespaces.contains_key(p));
    assert_eq!(after, before);
}
