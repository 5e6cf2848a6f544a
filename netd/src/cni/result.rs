//! The ADD result in the spec's shape, from the agent's container view:
//! `interfaces` (host veth end, then the container interface with its
//! `sandbox`), `ips` (with `gateway` and `interface` index), `routes`,
//! `dns`.
use serde_json::{json, Value};

use super::error::{CniError, CniResult, AGENT_REFUSED};
use crate::schema::{ContainerView, EndpointView};

/// The agent's record of one attachment: (network name, endpoint view).
pub fn endpoint<'a>(
    container: &'a ContainerView,
    ifname: &str,
) -> Option<(&'a str, &'a EndpointView)> {
    container
        .networks
        .iter()
        .find(|(_, ep)| ep.interface == ifname)
        .map(|(name, ep)| (name.as_str(), ep))
}

pub fn build(cni_version: &str, container: &ContainerView, ifname: &str) -> CniResult<Value> {
    let (_, ep) = endpoint(container, ifname).ok_or_else(|| {
        CniError::new(
            AGENT_REFUSED,
            format!("the agent shows no interface {ifname} for the container"),
        )
    })?;
    let gateway = ep.gateway.to_string();
    let address = format!("{}/{}", ep.ip_address, ep.prefix_len);
    let mut host = json!({ "name": ep.host_interface });
    let mut inside = json!({
        "name": ifname,
        "mac": ep.mac_address,
        "sandbox": container.netns_path,
    });
    if cni_version == "1.1.0" {
        host["mtu"] = json!(ep.mtu);
        inside["mtu"] = json!(ep.mtu);
    }
    let mut ip = json!({ "address": address, "gateway": gateway, "interface": 1 });
    if cni_version == "0.4.0" {
        ip["version"] = json!("4");
    }
    let routes = if ep.default_route {
        json!([{ "dst": "0.0.0.0/0", "gw": gateway }])
    } else {
        json!([])
    };
    // netd's resolver answers containers on user networks on 127.0.0.11,
    // inside their own netns.
    let resolver = crate::dns::CONTAINER_RESOLVER;
    let served = container.dns.contains(&resolver.into());
    let dns = if served {
        json!({ "nameservers": [resolver] })
    } else {
        json!({})
    };
    Ok(json!({
        "cniVersion": cni_version,
        "interfaces": [host, inside],
        "ips": [ip],
        "routes": routes,
        "dns": dns,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ContainerView {
        serde_json::from_value(json!({
            "Name": "c", "Id": "abc", "Created": "", "NetnsPath": "/run/netns/x",
            "Ports": [], "Mode": "bridge", "Dns": ["127.0.0.11"], "Origin": "cni",
            "Labels": {}, "Owner": "netd",
            "Networks": { "web": {
                "NetworkID": "n1", "IPAddress": "10.9.0.2", "IPPrefixLen": 24,
                "PrefixLen": 24, "Gateway": "10.9.0.1",
                "MacAddress": "02:42:0a:09:00:02", "Interface": "eth0",
                "HostInterface": "nd0123456789a", "Aliases": [], "DefaultRoute": true,
                "MTU": 1500, "Counters": null
            }}
        }))
        .unwrap()
    }

    #[test]
    fn result_follows_the_spec_per_version() {
        let r = build("1.1.0", &view(), "eth0").unwrap();
        assert_eq!(r["interfaces"][1]["sandbox"], "/run/netns/x");
        assert_eq!(r["interfaces"][1]["mtu"], 1500);
        assert_eq!(
            r["ips"][0],
            json!({"address":"10.9.0.2/24","gateway":"10.9.0.1","interface":1})
        );
        assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(r["dns"]["nameservers"][0], "127.0.0.11");
        let old = build("0.4.0", &view(), "eth0").unwrap();
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][1].get("mtu").is_none());
        assert!(build("1.0.0", &view(), "eth1").is_err());
    }
}
