//! The Docker driver's calls on the fake kernel: a Join that fails at any
//! step leaves the kernel, the store and the agent as after
//! CreateEndpoint (and Docker's retry works); Leave and DeleteEndpoint
//! take everything away.
use serde_json::json;

use super::Bed;
use crate::docker::types;

const NET: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
const EP: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

fn join() -> types::Join {
    serde_json::from_value(json!({
        "NetworkID": NET,
        "EndpointID": EP,
        "SandboxKey": "/var/run/docker/netns/fake",
    }))
    .unwrap()
}

fn endpoint_ref() -> types::EndpointRef {
    serde_json::from_value(json!({ "NetworkID": NET, "EndpointID": EP })).unwrap()
}

async fn bed() -> Bed {
    let bed = Bed::new().await;
    let mut agent = bed.agent.lock().await;
    agent
        .docker_create_network(
            serde_json::from_value(json!({
                "NetworkID": NET,
                "IPv4Data": [{ "Pool": "10.9.0.0/24", "Gateway": "10.9.0.1/24" }],
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    agent
        .docker_create_endpoint(
            serde_json::from_value(json!({ "NetworkID": NET, "EndpointID": EP })).unwrap(),
        )
        .await
        .unwrap();
    drop(agent);
    bed
}

#[tokio::test]
async fn a_join_failing_at_any_step_leaves_the_endpoint_as_created() {
    let bed = bed().await;
    let created = bed.snapshot().await;
    bed.fake.count_steps();
    bed.agent.lock().await.docker_join(join()).await.unwrap();
    let steps = bed.fake.steps();
    // veth, mark, entry, 2 programs, up.
    assert!(steps.len() >= 6, "{steps:?}");
    let s = bed.fake.state();
    let c = bed.find(&EP[..12]).await;
    let host = s.link(&c.endpoints[0].host_ifname).expect("the host end");
    assert!(host.up && host.master.is_some(), "{host:?}");
    // The peer waits in the agent's netns for Docker to move it.
    assert!(s.link(&c.endpoints[0].ifname).is_some(), "{:?}", s.links);
    bed.agent
        .lock()
        .await
        .docker_delete_endpoint(&endpoint_ref())
        .await
        .unwrap();
    let mut agent = bed.agent.lock().await;
    agent
        .docker_create_endpoint(
            serde_json::from_value(json!({ "NetworkID": NET, "EndpointID": EP })).unwrap(),
        )
        .await
        .unwrap();
    drop(agent);
    // Created again: the same snapshot (the endpoint's names and address
    // come from its id and the pool).
    let again = bed.snapshot().await;
    assert_eq!(again.kernel, created.kernel);
    for (n, step) in steps.iter().enumerate() {
        bed.fake.fail_at(n as u64 + 1);
        let result = bed.agent.lock().await.docker_join(join()).await;
        assert!(!bed.fake.armed(), "Join never reached {step}");
        assert!(result.is_err(), "Join succeeded although {step} failed");
        assert_eq!(
            bed.snapshot().await,
            again,
            "Join failing at step {} ({step}) left a change behind",
            n + 1
        );
    }
    // Docker retries: the Join goes through.
    bed.agent.lock().await.docker_join(join()).await.unwrap();
    bed.agent
        .lock()
        .await
        .docker_delete_endpoint(&endpoint_ref())
        .await
        .unwrap();
    let s = bed.fake.state();
    assert!(s.endpoints.is_empty() && !s.pins.iter().any(|p| p.starts_with("nd")));
    assert!(!s
        .links
        .values()
        .any(|l| l.name.starts_with("nd") || l.name.starts_with("nc")));
}
