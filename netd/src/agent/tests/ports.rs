//! Published ports: conflicts with other containers, within a request and
//! with host processes; each refusal changes nothing.
use super::Bed;
use crate::error::AgentError;

async fn bed() -> Bed {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.container("web", "n1", &["8080:80", "127.0.0.1:9090:90/udp"])
        .await;
    bed
}

/// Adds `name` publishing `publish`; it must be refused as a conflict
/// naming `says`, with nothing changed.
async fn refused(bed: &mut Bed, name: &str, publish: &[&str], says: &str) {
    let req = bed.add_request(name, "n1", publish);
    let before = bed.snapshot().await;
    let e = bed.agent.add_container(req).await.unwrap_err();
    assert!(
        matches!(&e, AgentError::Conflict(m) if m.contains(says)),
        "{publish:?}: {e}"
    );
    assert_eq!(bed.snapshot().await, before, "{publish:?}");
}

#[tokio::test]
async fn a_port_another_container_publishes_is_refused() {
    let mut bed = bed().await;
    refused(&mut bed, "a", &["8080:81"], "already published by web").await;
    // Any address clashes with a specific one and the other way round.
    refused(
        &mut bed,
        "b",
        &["127.0.0.1:8080:80"],
        "already published by web",
    )
    .await;
    refused(&mut bed, "c", &["9090:90/udp"], "already published by web").await;
    // The conflict is found before anything was made: the ports first in
    // the request that were free are not left held.
    refused(
        &mut bed,
        "d",
        &["7070:70", "8080:80"],
        "already published by web",
    )
    .await;
}

#[tokio::test]
async fn ports_that_differ_in_protocol_or_address_do_not_clash() {
    let mut bed = bed().await;
    bed.container("a", "n1", &["8080:80/udp"]).await;
    bed.container("b", "n1", &["127.0.0.2:9090:90/udp"]).await;
    let s = bed.fake.state();
    assert_eq!(s.published.len(), 4);
    assert_eq!(s.held_ports.len(), 4);
}

#[tokio::test]
async fn a_request_that_clashes_with_itself_is_refused() {
    let mut bed = bed().await;
    refused(&mut bed, "a", &["7070:70", "7070:71"], "(this request)").await;
    refused(
        &mut bed,
        "a",
        &["7000-7002:70-72", "7001:80"],
        "(this request)",
    )
    .await;
}

#[tokio::test]
async fn a_port_a_host_process_uses_is_refused_and_nothing_is_left_held() {
    let mut bed = bed().await;
    bed.fake.with(|s| {
        s.busy_ports.insert((super::ANY, 7071, 6));
    });
    refused(
        &mut bed,
        "a",
        &["7070:70", "7071:71", "7072:72"],
        "already in use on the host",
    )
    .await;
    // The port is free once the host process is gone.
    bed.fake.with(|s| s.busy_ports.clear());
    bed.container("a", "n1", &["7070:70", "7071:71", "7072:72"])
        .await;
}

#[tokio::test]
async fn a_removed_containers_ports_are_free_again() {
    let mut bed = bed().await;
    bed.agent.remove_container("web", false).await.unwrap();
    let s = bed.fake.state();
    assert!(s.published.is_empty() && s.held_ports.is_empty(), "{s:?}");
    bed.container("again", "n1", &["8080:80", "127.0.0.1:9090:90/udp"])
        .await;
}

#[tokio::test]
async fn host_port_zero_gets_a_free_port() {
    let mut bed = bed().await;
    bed.fake.with(|s| {
        s.busy_ports.insert((super::ANY, 40_000, 6));
    });
    let a = bed.container("a", "n1", &["80"]).await;
    let b = bed.container("b", "n1", &["80"]).await;
    let ports: Vec<u16> = [&a, &b].iter().map(|c| c.ports[0].host_port).collect();
    assert_eq!(ports, vec![40_001, 40_002]);
}

#[tokio::test]
async fn internal_networks_publish_nothing() {
    let bed = bed().await;
    bed.agent
        .create_network(crate::schema::NetworkCreate {
            name: "inner".into(),
            subnet: Some("10.9.0.0/24".parse().unwrap()),
            internal: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let req = bed.add_request("a", "inner", &["7070:70"]);
    let e = bed.agent.add_container(req).await.unwrap_err();
    assert!(
        matches!(&e, AgentError::Invalid(m) if m.contains("internal network inner")),
        "{e}"
    );
}

#[tokio::test]
async fn disconnecting_the_published_network_needs_unpublish() {
    let bed = bed().await;
    let before = bed.snapshot().await;
    let req = crate::schema::NetworkDisconnect {
        container: "web".into(),
        unpublish: false,
    };
    let e = bed.agent.disconnect("n1", req).await.unwrap_err();
    assert!(matches!(e, AgentError::Conflict(_)), "{e}");
    assert_eq!(bed.snapshot().await, before);
    let req = crate::schema::NetworkDisconnect {
        container: "web".into(),
        unpublish: true,
    };
    let c = bed.agent.disconnect("n1", req).await.unwrap();
    assert!(c.ports.is_empty() && c.endpoints.is_empty());
    let s = bed.fake.state();
    assert!(s.published.is_empty() && s.held_ports.is_empty() && s.endpoints.is_empty());
}
