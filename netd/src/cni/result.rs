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

/// The endpoint's IPv4 address as a result shows it (`A/LEN`), if any.
pub fn address4(ep: &EndpointView) -> Option<String> {
    (!ep.ip_address.is_unspecified()).then(|| format!("{}/{}", ep.ip_address, ep.prefix_len))
}

/// The endpoint's IPv6 address as a result shows it (`A/LEN`), if any.
pub fn address6(ep: &EndpointView) -> Option<String> {
    (!ep.global_ipv6_address.is_empty())
        .then(|| format!("{}/{}", ep.global_ipv6_address, ep.global_ipv6_prefix_len))
}

pub fn build(cni_version: &str, container: &ContainerView, ifname: &str) -> CniResult<Value> {
    let (_, ep) = endpoint(container, ifname).ok_or_else(|| {
        CniError::new(
            AGENT_REFUSED,
            format!("the agent shows no interface {ifname} for the container"),
        )
    })?;
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
    // 0.4.0 names each address's family; 1.0 dropped the key.
    let entry = |address: String, gateway: &str, version: &str| {
        let mut ip = json!({ "address": address, "gateway": gateway, "interface": 1 });
        if cni_version == "0.4.0" {
            ip["version"] = json!(version);
        }
        ip
    };
    let (mut ips, mut routes) = (Vec::new(), Vec::new());
    // An IPv6-only network's endpoint has no IPv4 address (0.0.0.0 in
    // the view): its result has the IPv6 entry and route only.
    if let Some(address) = address4(ep) {
        let gateway = ep.gateway.to_string();
        ips.push(entry(address, &gateway, "4"));
        if ep.default_route {
            routes.push(json!({ "dst": "0.0.0.0/0", "gw": gateway }));
        }
    }
    if let Some(address6) = address6(ep) {
        ips.push(entry(address6, &ep.ipv6_gateway, "6"));
        // Each family's default route goes by the first network with that
        // family (`DefaultRoute6`), not always by the first network.
        if ep.default_route6 && !ep.ipv6_gateway.is_empty() {
            routes.push(json!({ "dst": "::/0", "gw": ep.ipv6_gateway }));
        }
    }
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
        "ips": ips,
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

    #[test]
    fn dual_stack_result() {
        let mut v = view();
        let ep = v.networks.get_mut("web").unwrap();
        ep.global_ipv6_address = "fd00:9::2".into();
        ep.global_ipv6_prefix_len = 64;
        ep.ipv6_gateway = "fd00:9::1".into();
        ep.default_route6 = true;
        let r = build("1.0.0", &v, "eth0").unwrap();
        assert_eq!(
            r["ips"][1],
            json!({"address":"fd00:9::2/64","gateway":"fd00:9::1","interface":1})
        );
        assert_eq!(r["routes"][1], json!({"dst":"::/0","gw":"fd00:9::1"}));
        let old = build("0.4.0", &v, "eth0").unwrap();
        assert_eq!(old["ips"][1]["version"], "6");
        assert_eq!(old["ips"][0]["version"], "4");
        // A second network that carries the IPv6 default route alone.
        let ep = v.networks.get_mut("web").unwrap();
        (ep.default_route, ep.default_route6) = (false, true);
        let r = build("1.0.0", &v, "eth0").unwrap();
        assert_eq!(r["routes"], json!([{"dst":"::/0","gw":"fd00:9::1"}]));
    }

    #[test]
    fn ipv6_only_result_has_no_ipv4() {
        let mut v = view();
        let ep = v.networks.get_mut("web").unwrap();
        ep.ip_address = std::net::Ipv4Addr::UNSPECIFIED;
        ep.gateway = std::net::Ipv4Addr::UNSPECIFIED;
        (ep.ip_prefix_len, ep.prefix_len) = (0, 0);
        ep.global_ipv6_address = "fd00:9::2".into();
        ep.global_ipv6_prefix_len = 64;
        ep.ipv6_gateway = "fd00:9::1".into();
        (ep.default_route, ep.default_route6) = (false, true);
        let r = build("1.0.0", &v, "eth0").unwrap();
        assert_eq!(
            r["ips"],
            json!([{"address":"fd00:9::2/64","gateway":"fd00:9::1","interface":1}])
        );
        assert_eq!(r["routes"], json!([{"dst":"::/0","gw":"fd00:9::1"}]));
        let old = build("0.4.0", &v, "eth0").unwrap();
        assert_eq!(old["ips"][0]["version"], "6");
        assert_eq!(old["ips"].as_array().map(Vec::len), Some(1));
    }
}
