//! The sweep and the IPv6 side of the datapath: a lost `NETWORKS6` or
//! `ENDPOINT6` entry is written again, a stale one removed, an entry left
//! on an endpoint without IPv6 taken away.
use super::Bed;
use crate::schema::NetworkCreate;

/// v6 (dual stack) with c1 and c2, v4 (IPv4 only) with c3; clean.
async fn bed() -> Bed {
    let mut bed = Bed::new().await;
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
    bed.network("v4", "10.4.0.0/24").await;
    bed.container("c1", "v6", &[]).await;
    bed.container("c2", "v6", &[]).await;
    bed.container("c3", "v4", &[]).await;
    assert_eq!(bed.sweep().await, Vec::<String>::new());
    let s = bed.fake.state();
    assert_eq!(s.networks6.len(), 1, "{:?}", s.networks6);
    assert_eq!(s.endpoints6.len(), 2, "{:?}", s.endpoints6);
    bed
}

async fn index_of(bed: &Bed, container: &str) -> u32 {
    let host = bed.find(container).await.endpoints[0].host_ifname.clone();
    bed.fake.state().index_of(&host).unwrap()
}

#[tokio::test]
async fn a_lost_ipv6_network_entry_is_written_again() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    bed.fake.with(|s| s.networks6.clear());
    bed.sweep().await;
    assert_eq!(bed.snapshot().await, good);
}

#[tokio::test]
async fn a_lost_ipv6_endpoint_entry_is_written_again() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    let i = index_of(&bed, "c2").await;
    bed.fake.with(|s| s.endpoints6.remove(&i));
    let repairs = bed.sweep().await;
    assert!(
        repairs
            .iter()
            .any(|r| r.contains("re-attached programs of c2")),
        "{repairs:?}"
    );
    assert_eq!(bed.snapshot().await, good);
    assert_eq!(bed.check("c2").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_stale_ipv6_network_and_orphan_ipv6_endpoint_entries_are_removed() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    bed.fake.with(|s| {
        let (_, info) = s.networks6.iter().next().map(|(k, v)| (*k, *v)).unwrap();
        s.networks6.insert("fd00:99::/64".parse().unwrap(), info);
        let ep = *s.endpoints6.values().next().unwrap();
        s.endpoints6.insert(907, ep);
    });
    let repairs = bed.sweep().await;
    assert!(
        repairs
            .iter()
            .any(|r| r == "removed stale datapath network fd00:99::/64"),
        "{repairs:?}"
    );
    assert!(
        repairs
            .iter()
            .any(|r| r == "removed orphan IPv6 endpoint entry 907"),
        "{repairs:?}"
    );
    assert_eq!(bed.snapshot().await, good);
}

#[tokio::test]
async fn an_ipv6_entry_on_an_endpoint_without_ipv6_is_removed() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    let i = index_of(&bed, "c3").await;
    bed.fake.with(|s| {
        let ep = *s.endpoints6.values().next().unwrap();
        s.endpoints6.insert(i, ep);
    });
    bed.sweep().await;
    assert_eq!(bed.snapshot().await, good);
}

#[tokio::test]
async fn removing_a_dual_stack_network_removes_both_entries() {
    let bed = bed().await;
    bed.agent.remove_container("c1", false).await.unwrap();
    bed.agent.remove_container("c2", false).await.unwrap();
    bed.agent.remove_network("v6").await.unwrap();
    let s = bed.fake.state();
    assert!(s.networks6.is_empty(), "{:?}", s.networks6);
    assert!(s.endpoints6.is_empty(), "{:?}", s.endpoints6);
    assert_eq!(s.networks.len(), 1);
}
