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
    with_endpoint(json!({
        "NetworkID": NET,
        "IPv4Data": [{ "Pool": "10.9.0.0/24", "Gateway": "10.9.0.1/24" }],
    }))
    .await
}

/// A bed with the Docker network of CreateNetwork body `network` and
/// endpoint `EP` on it.
async fn with_endpoint(network: serde_json::Value) -> Bed {
    let bed = Bed::new().await;
    let net = network["NetworkID"].clone();
    let mut agent = bed.agent.lock().await;
    agent
        .docker_create_network(serde_json::from_value(network).unwrap())
        .await
        .unwrap();
    agent
        .docker_create_endpoint(
            serde_json::from_value(json!({ "NetworkID": net, "EndpointID": EP })).unwrap(),
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

const NET6: &str = "aa00000000000000000000000000000000000000000000000000000000000006";

fn program(net: &str, portmap: serde_json::Value, extra: &[(&str, bool)]) -> types::Program {
    let mut options = serde_json::Map::new();
    options.insert(types::OPT_PORTMAP.into(), portmap);
    for (k, v) in extra {
        options.insert(k.to_string(), json!(v));
    }
    serde_json::from_value(json!({ "NetworkID": net, "EndpointID": EP, "Options": options }))
        .unwrap()
}

fn binding(host_ip: &str, host_port: u16, port: u16) -> serde_json::Value {
    json!({ "Proto": 6, "IP": "", "Port": port, "HostIP": host_ip, "HostPort": host_port, "HostPortEnd": host_port })
}

/// The endpoint's mappings as `netd port` shows them, sorted.
async fn shown(bed: &Bed) -> Vec<String> {
    let mut v: Vec<String> = bed
        .find(&EP[..12])
        .await
        .ports
        .iter()
        .map(|p| p.to_string())
        .collect();
    v.sort();
    v
}

/// Programs `8080:80` and `ip:8081:81` on `net`: refused with a reason
/// containing each of `says`, leaving the snapshot `before`.
async fn refused(bed: &Bed, net: &str, ip: &str, says: &[&str], before: &super::Snapshot) {
    let req = program(
        net,
        json!([binding("", 8080, 80), binding(ip, 8081, 81)]),
        &[],
    );
    let err = bed
        .agent
        .lock()
        .await
        .docker_program(req)
        .unwrap_err()
        .to_string();
    assert!(says.iter().all(|w| err.contains(w)), "{ip}: {err}");
    assert_eq!(
        &bed.snapshot().await,
        before,
        "refused {ip} changed something"
    );
}

/// The portmap entries dockerd 20.10 hands the driver (HostIP as the user
/// typed it, the same on every kind of network), on a dual-stack network:
/// no host address publishes on both families with the same host port
/// (also one netd picks), `0.0.0.0` and IPv4 addresses on IPv4 only, `::`
/// and IPv6 addresses on IPv6 only. Docker 28's no_proxy_6to4 (another
/// endpoint is the IPv6 gateway) leaves the IPv6 ones to that endpoint.
#[tokio::test]
async fn portmap_entries_publish_on_the_families_docker_does() {
    let bed = with_endpoint(json!({
        "NetworkID": NET6,
        "Options": { "com.docker.network.enable_ipv6": true },
        "IPv4Data": [{ "Pool": "10.9.6.0/24", "Gateway": "10.9.6.1/24" }],
        "IPv6Data": [{ "Pool": "fd00:9:6::/64", "Gateway": "fd00:9:6::1/64" }],
    }))
    .await;
    let mut agent = bed.agent.lock().await;
    let portmap = json!([
        binding("", 8080, 80),
        binding("::", 8081, 81),
        binding("0.0.0.0", 8082, 82),
        binding("127.0.0.1", 8083, 83),
        binding("::1", 8084, 84),
        binding("", 0, 85),
    ]);
    agent
        .docker_program(program(NET6, portmap.clone(), &[]))
        .unwrap();
    drop(agent);
    let ports = shown(&bed).await;
    let picked: Vec<&String> = ports.iter().filter(|p| p.starts_with("85/tcp")).collect();
    assert_eq!(picked.len(), 2, "{ports:?}");
    let port_of = |s: &str| s.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        port_of(picked[0]),
        port_of(picked[1]),
        "one host port for both: {ports:?}"
    );
    let rest: Vec<&String> = ports.iter().filter(|p| !p.starts_with("85/tcp")).collect();
    assert_eq!(
        rest,
        [
            "80/tcp -> 0.0.0.0:8080",
            "80/tcp -> [::]:8080",
            "81/tcp -> [::]:8081",
            "82/tcp -> 0.0.0.0:8082",
            "83/tcp -> 127.0.0.1:8083",
            "84/tcp -> [::1]:8084",
        ]
    );
    // Docker 28 with another endpoint as the IPv6 gateway.
    let other = json!([binding("", 8080, 80), binding("::", 8081, 81)]);
    let mut agent = bed.agent.lock().await;
    agent
        .docker_program(program(NET6, other, &[(types::OPT_NO_PROXY_6TO4, true)]))
        .unwrap();
    drop(agent);
    assert_eq!(shown(&bed).await, ["80/tcp -> 0.0.0.0:8080"]);
}

/// On a network without IPv6, no host address is IPv4 only and an IPv6
/// one is refused with what to do, leaving what was published.
#[tokio::test]
async fn an_ipv6_host_address_for_an_endpoint_without_ipv6_is_refused() {
    let bed = bed().await;
    let mut agent = bed.agent.lock().await;
    agent
        .docker_program(program(NET, json!([binding("", 8080, 80)]), &[]))
        .unwrap();
    drop(agent);
    assert_eq!(shown(&bed).await, ["80/tcp -> 0.0.0.0:8080"]);
    let before = bed.snapshot().await;
    for ip in ["::", "2001:db8::1"] {
        let says = ["the container has no IPv6 address", "--ipv6"];
        refused(&bed, NET, ip, &says, &before).await;
    }
    // Docker 28: another endpoint deals with IPv6 host addresses.
    let req = program(
        NET,
        json!([binding("", 8080, 80), binding("::", 8081, 81)]),
        &[(types::OPT_NO_PROXY_6TO4, true)],
    );
    bed.agent.lock().await.docker_program(req).unwrap();
    assert_eq!(shown(&bed).await, ["80/tcp -> 0.0.0.0:8080"]);
}

const NET6ONLY: &str = "aa000000000000000000000000000000000000000000000000000000000000f6";

/// Docker 28's `--ipv4=false`: an IPv6-only endpoint publishes no host
/// address on `::` alone, IPv6 addresses as usual; an IPv4 host address
/// is refused with what to do, leaving what was published.
#[tokio::test]
async fn an_ipv6_only_endpoint_publishes_on_ipv6_alone() {
    let bed = with_endpoint(json!({
        "NetworkID": NET6ONLY,
        "Options": {
            "com.docker.network.enable_ipv6": true,
            "com.docker.network.enable_ipv4": false,
        },
        "IPv4Data": [],
        "IPv6Data": [{ "Pool": "fd00:9:f6::/64", "Gateway": "fd00:9:f6::1/64" }],
    }))
    .await;
    let portmap = json!([
        binding("", 8080, 80),
        binding("::", 8081, 81),
        binding("::1", 8082, 82)
    ]);
    bed.agent
        .lock()
        .await
        .docker_program(program(NET6ONLY, portmap, &[]))
        .unwrap();
    let want = [
        "80/tcp -> [::]:8080",
        "81/tcp -> [::]:8081",
        "82/tcp -> [::1]:8082",
    ];
    assert_eq!(shown(&bed).await, want);
    let s = bed.fake.state();
    assert!(s.published.is_empty(), "{:?}", s.published);
    assert_eq!(s.published6.len(), 3, "{:?}", s.published6);
    let before = bed.snapshot().await;
    for ip in ["0.0.0.0", "127.0.0.1"] {
        let says = ["the container has no IPv4 address", "[::]:8081:81"];
        refused(&bed, NET6ONLY, ip, &says, &before).await;
    }
    assert_eq!(shown(&bed).await, want);
}
