//! The JSON on the wire, pinned: answers as the agent wrote them before
//! the answers were typed (Docker-like names, which netd-cni, the Docker
//! driver's users and the tests read) must come out of the typed views
//! unchanged, field for field.
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

use crate::schema::{ContainerView, NetworkView, StatusView};

/// `golden` read as `T` and written again is `golden`: no field lost,
/// renamed or added.
fn round_trip<T: DeserializeOwned + Serialize>(golden: Value) {
    let typed: T = serde_json::from_value(golden.clone())
        .unwrap_or_else(|e| panic!("{e}: does not parse:\n{golden:#}"));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(again, golden, "the typed view changed the wire format");
}

fn counters() -> Value {
    json!({
        "PacketsIn": 3, "BytesIn": 300, "PacketsOut": 2, "BytesOut": 200,
        "Drops": { "policy-denied": 1 },
    })
}

#[test]
fn network_inspect_keeps_dockers_names() {
    round_trip::<NetworkView>(json!({
        "Name": "web",
        "Id": "f".repeat(64),
        "Created": "2026-01-01T00:00:00+00:00",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv4": true,
        "EnableIPv6": true,
        "Internal": false,
        "IPAM": {
            "Driver": "default",
            "Config": [
                { "Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1", "IPRange": null },
                { "Subnet": "fd00:1:2:3::/64", "Gateway": "fd00:1:2:3::1", "IPRange": null },
            ],
        },
        "Containers": {
            "abc": {
                "Name": "c1", "IPv4Address": "10.9.0.2/24",
                "IPv6Address": "fd00:1:2:3::2/64",
                "MacAddress": "02:42:0a:09:00:02", "Interface": "eth0",
                "HostInterface": "nd0123456789a",
            },
        },
        "Counters": counters(),
        "Options": {
            "com.docker.network.bridge.name": "br-ffffffffffff",
            "com.docker.network.bridge.enable_icc": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "true",
            "com.docker.network.driver.mtu": "1500",
        },
        "Labels": { "team": "blue" },
        "Owner": "netd",
    }));
    // Counters are null when the map cannot be read; a range is shown.
    round_trip::<NetworkView>(json!({
        "Name": "bridge", "Id": "e".repeat(64), "Created": "", "Scope": "local",
        "Driver": "bridge", "EnableIPv4": true, "EnableIPv6": false, "Internal": true,
        "IPAM": { "Driver": "default", "Config": [
            { "Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1", "IPRange": "172.17.5.0/24" },
        ] },
        "Containers": {}, "Counters": null, "Options": {}, "Labels": {}, "Owner": "docker",
    }));
}

#[test]
fn container_inspect_keeps_dockers_names() {
    let endpoint = |ip: &str, first: bool, counters: Value| {
        json!({
            "NetworkID": "f".repeat(64), "IPAddress": ip, "IPPrefixLen": 24, "PrefixLen": 24,
            "Gateway": "10.9.0.1", "GlobalIPv6Address": if first { "fd00::2" } else { "" },
            "GlobalIPv6PrefixLen": if first { 64 } else { 0 },
            "IPv6Gateway": if first { "fd00::1" } else { "" },
            "MacAddress": "02:42:0a:09:00:02", "Interface": "eth0",
            "HostInterface": "nd0123456789a", "Aliases": ["db"], "DefaultRoute": first,
            "DefaultRoute6": first,
            "MTU": 1500, "Counters": counters,
        })
    };
    round_trip::<ContainerView>(json!({
        "Name": "c1", "Id": "abc", "Created": "2026-01-01T00:00:00+00:00",
        "NetnsPath": "/run/netns/c1",
        "Ports": [
            { "HostIp": "0.0.0.0", "HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp" },
            { "HostIp": "::", "HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp" },
        ],
        "Mode": "bridge",
        "Networks": {
            "web": endpoint("10.9.0.2", true, counters()),
            "db": endpoint("10.9.1.2", false, Value::Null),
        },
        "Dns": ["127.0.0.11"], "Origin": null, "Labels": {}, "Owner": "netd",
    }));
    // A Docker endpoint carries `Docker`; others leave it out.
    round_trip::<ContainerView>(json!({
        "Name": "d", "Id": "ep1", "Created": "", "NetnsPath": "", "Ports": [],
        "Mode": "bridge", "Networks": {}, "Dns": [], "Origin": "docker",
        "Labels": { "k": "v" }, "Owner": "docker",
        "Docker": { "EndpointID": "ep1", "SandboxKey": "/var/run/docker/netns/x", "Joined": true },
    }));
}

#[test]
fn status_keeps_its_names() {
    round_trip::<StatusView>(json!({
        "version": "0.1.0", "git_revision": "abc", "map_layout_version": 1, "pid": 7,
        "run_dir": "/run/netd", "source_hash": "00", "uptime_seconds": 3,
        "state_dir": "/var/lib/netd", "bpffs": "/sys/fs/bpf/netd",
        "map_layout": "/sys/fs/bpf/netd/v1", "networks": 2, "containers": 1,
        "programs": ["from_container"],
        "uplinks": { "eth0": { "ifindex": 2, "address": "192.0.2.10", "address6": "2001:db8::10" },
                     "eth1": { "ifindex": 3, "address": null, "address6": null } },
        "snat_ports": "61000-65535", "pinned_links": 4,
        "maps": { "ENDPOINTS": { "entries": 1, "capacity": 65536 } },
        "conntrack": { "flows": 0, "flows6": 0, "capacity": 65536, "timeouts": { "tcp": 7440 } },
        "drops": { "policy-denied": 5 },
        "host_routing": { "mode": "ebpf", "shortcuts": { "peer-same-network": 3 },
                          "fallbacks": { "frag-needed": 1 } },
        "events": { "monitors": 0, "types": ["drop"], "suppressed": 0 },
        "network_counters": { "web": counters() },
        "dns": { "listeners": 1, "container_listeners": 1, "container_listeners_bound": 1,
                 "upstreams": ["192.0.2.53:53"], "queries": 9, "answered": 8, "forwarded": 1,
                 "upstream_failures": 0, "rate_limited": 0, "malformed": 0 },
        "last_reconcile": { "at": null, "repairs": [] },
        "cluster": null,
        "overlay": { "device": { "ifindex": 9, "local": "192.0.2.10", "port": 4789,
                                 "underlay_mtu": 1500 },
                     "remote_endpoints": 2 },
    }));
    let cluster = json!({
        "store": ["http://192.0.2.1:2379"], "reachable": true, "last_error": null,
        "last_contact": "2026-01-01T00:00:00+00:00", "sessions": 1, "host_id": "h1",
        "hostname": "a", "advertise_address": "192.0.2.10", "lease": 7, "revision": 42,
        "overlay_networks": 1,
        "hosts": [{ "id": "h1", "hostname": "a", "address": "192.0.2.10",
                    "since": "2026-01-01T00:00:00+00:00", "self": true }],
        "remote_endpoints": [{ "network": "ov", "container": "c2", "ip": "10.50.0.3",
                               "host": "b", "host_address": "192.0.2.11" }],
        "conflicts": [],
    });
    round_trip::<crate::schema::ClusterStatus>(cluster);
}

#[test]
fn every_agent_error_gets_its_status() {
    use axum::http::StatusCode;

    use crate::error::AgentError;
    let cases = [
        (AgentError::NotFound("x".into()), StatusCode::NOT_FOUND),
        (AgentError::Conflict("x".into()), StatusCode::CONFLICT),
        (AgentError::Invalid("x".into()), StatusCode::BAD_REQUEST),
        (
            AgentError::Internal(anyhow::anyhow!("x")),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(super::status_of(&e), want, "{e:?}");
    }
}
