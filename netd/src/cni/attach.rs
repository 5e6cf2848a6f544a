//! ADD and DEL: a CNI attachment (container id, interface) as a netd
//! container (the first attachment) or a network connect (the next ones).
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use serde_json::Value;

use super::{
    agent::AgentApi,
    config::NetConf,
    env::Env,
    error::{fail, CniError, CniResult, AGENT_REFUSED, INVALID_CONFIG, INVALID_ENV},
    result,
};
use crate::{
    model::ORIGIN_CNI,
    schema::{
        ContainerAdd, ContainerView, EndpointView, NetworkConnect, NetworkCreate,
        NetworkDisconnect, NetworkView,
    },
};

/// Label holding the CNI container id of a netd-cni container.
pub const LABEL_CONTAINER_ID: &str = "cni.netd/container-id";

/// The netd-cni container of CNI container id `id`, if any.
pub fn find_cni<'a>(containers: &'a [ContainerView], id: &str) -> Option<&'a ContainerView> {
    containers.iter().find(|c| cni_id(c) == Some(id))
}

/// The CNI container id of a netd-cni container.
pub fn cni_id(c: &ContainerView) -> Option<&str> {
    if c.origin.as_deref() != Some(ORIGIN_CNI) {
        return None;
    }
    c.labels.get(LABEL_CONTAINER_ID).map(String::as_str)
}

/// Does the endpoint view belong to the config's network (name or id)?
pub fn on_network(net_name: &str, ep: &EndpointView, network: &str) -> bool {
    net_name == network || ep.network_id == network
}

/// A netd name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, ≤ 64) made from `s`.
fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        out.insert(0, 'c');
    }
    out.truncate(64);
    out
}

/// The pod's name (`NAME.NAMESPACE` for Kubernetes, podman's container
/// name), else the CNI container id; `cni-ID` when that name is taken.
fn container_name(env: &Env, containers: &[ContainerView]) -> String {
    let wanted = match (&env.args.pod_name, &env.args.pod_namespace) {
        (Some(n), Some(ns)) => format!("{n}.{ns}"),
        (Some(n), None) => n.clone(),
        _ => env.container_id.clone(),
    };
    let wanted = sanitize(&wanted);
    if containers.iter().any(|c| c.name == wanted) {
        sanitize(&format!("cni-{}", env.container_id))
    } else {
        wanted
    }
}

/// The static addresses asked for: `CNI_ARGS` `IP=` (IPv4), else
/// `runtimeConfig.ips` (at most one of each family).
fn static_ips(env: &Env, conf: &NetConf) -> CniResult<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for ip in &conf.runtime.ips {
        let addr = ip.split('/').next().unwrap_or(ip);
        match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => v4.push(a),
            Ok(IpAddr::V6(a)) => v6.push(a),
            Err(_) => {
                return fail(
                    INVALID_CONFIG,
                    format!("runtimeConfig.ips: {ip:?} is not an address"),
                )
            }
        }
    }
    if v4.len() > 1 || v6.len() > 1 {
        return fail(
            INVALID_CONFIG,
            "runtimeConfig.ips: one IPv4 and one IPv6 address per attachment",
        );
    }
    Ok((env.args.ip.or(v4.first().copied()), v6.first().copied()))
}

/// A host address as the `HOST_IP:` part of a publish spec (`[V6]:`).
fn spec_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:"),
        IpAddr::V6(a) => format!("[{a}]:"),
    }
}

/// `runtimeConfig.portMappings` as publish specs (`[IP:]HOST:CONTAINER/PROTO`).
fn publish_specs(conf: &NetConf) -> CniResult<Vec<String>> {
    let mut out = Vec::new();
    for pm in &conf.runtime.port_mappings {
        let port_ok = |p: u32| (1..=65535).contains(&p);
        if !port_ok(pm.host_port) || !port_ok(pm.container_port) {
            return fail(
                INVALID_CONFIG,
                format!(
                    "runtimeConfig.portMappings: ports must be 1-65535 (hostPort {}, containerPort {})",
                    pm.host_port, pm.container_port
                ),
            );
        }
        let proto = pm.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return fail(
                INVALID_CONFIG,
                format!(
                    "runtimeConfig.portMappings: unknown protocol {proto:?} (tcp, udp or sctp)"
                ),
            );
        }
        // As the reference portmap plugin: no hostIP publishes on both
        // families (IPv6 where the attachment has it), 0.0.0.0 on IPv4
        // only, :: or an IPv6 address on IPv6 only (refused by the agent
        // where the attachment has no IPv6).
        let host_ip = match pm.host_ip.as_deref().unwrap_or("") {
            "" => String::new(),
            ip => match ip.parse::<IpAddr>() {
                Ok(a) => spec_host(a),
                Err(_) => {
                    return fail(
                        INVALID_CONFIG,
                        format!(
                        "runtimeConfig.portMappings: hostIP {ip:?} is not an IPv4 or IPv6 address"
                    ),
                    )
                }
            },
        };
        out.push(format!(
            "{host_ip}{}:{}/{proto}",
            pm.host_port, pm.container_port
        ));
    }
    Ok(out)
}

/// The network of the config; created on first use when the config
/// describes it (`subnet`, ...). Returns its inspect view.
async fn ensure_network(api: &AgentApi, conf: &NetConf) -> CniResult<NetworkView> {
    match api.network(&conf.network).await {
        Ok(net) => {
            check_matches(conf, &net)?;
            return Ok(net);
        }
        Err(f) if f.not_found() => {}
        Err(f) => return Err(f.into()),
    }
    if conf.create.is_empty() {
        return fail(
            INVALID_CONFIG,
            format!(
                "netd has no network {0}: create it (`netd network create {0}`) or give \"subnet\" in the CNI config to create it on first use",
                conf.network
            ),
        );
    }
    let c = &conf.create;
    let req = NetworkCreate {
        name: conf.network.clone(),
        subnet: c.subnet,
        gateway: c.gateway,
        ip_range: c.ip_range,
        ipv6: c.ipv6.unwrap_or(false),
        ipv4: c.ipv4,
        subnet6: c.subnet6,
        gateway6: c.gateway6,
        ip_range6: c.ip_range6,
        internal: c.internal.unwrap_or(false),
        icc: c.icc,
        masquerade: c.masquerade,
        mtu: c.mtu,
        bridge: c.bridge.clone(),
        labels: BTreeMap::from([("cni.netd/config".to_string(), conf.name.clone())]),
        options: BTreeMap::new(),
        ..Default::default()
    };
    match api.create_network(&req).await {
        Ok(_) => {}
        // Another ADD created it meanwhile.
        Err(f) if f.status == Some(409) && api.network(&conf.network).await.is_ok() => {}
        Err(f) => return Err(f.into()),
    }
    Ok(api.network(&conf.network).await?)
}

/// An existing network must be the one the config describes.
fn check_matches(conf: &NetConf, net: &NetworkView) -> CniResult<()> {
    let (ipam, ipam6) = (net.ipv4(), net.ipv6());
    let c = &conf.create;
    let mut differs = Vec::new();
    let mut compare = |key: &str, have: Option<String>, want: Option<String>| {
        if let Some(want) = want {
            if have.as_ref() != Some(&want) {
                differs.push(format!("{key} {} (config: {want})", shown(have)));
            }
        }
    };
    compare("subnet", text(ipam.map(|p| p.subnet)), text(c.subnet));
    compare("gateway", text(ipam.map(|p| p.gateway)), text(c.gateway));
    compare("ipv4", text(Some(net.enable_ipv4)), text(c.ipv4));
    compare("ipv6", text(Some(net.enable_ipv6)), text(c.ipv6));
    compare("subnet6", text(ipam6.map(|p| p.subnet)), text(c.subnet6));
    compare("gateway6", text(ipam6.map(|p| p.gateway)), text(c.gateway6));
    compare("internal", text(Some(net.internal)), text(c.internal));
    if differs.is_empty() {
        Ok(())
    } else {
        fail(
            INVALID_CONFIG,
            format!(
                "network {} exists with {}; fix the CNI config or remove the network",
                conf.network,
                differs.join(", ")
            ),
        )
    }
}

fn text<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|v| v.to_string())
}

/// A value of the agent's answer as a message shows it (`-`: none).
fn shown(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub async fn add(api: &AgentApi, env: &Env, conf: &NetConf) -> CniResult<Value> {
    let net = ensure_network(api, conf).await?;
    let net_name = net.name.clone();
    let ips = static_ips(env, conf)?;
    if let (Some(ip6), false) = (ips.1, net.enable_ipv6) {
        return fail(
            INVALID_CONFIG,
            format!(
                "runtimeConfig.ips: {ip6} is IPv6 and network {net_name} has no IPv6 (a network made with \"ipv6\": true has)"
            ),
        );
    }
    let mac = env.args.mac.clone().or_else(|| conf.runtime.mac.clone());
    let aliases = conf
        .runtime
        .aliases
        .get(&conf.name)
        .or_else(|| conf.runtime.aliases.get(&conf.network))
        .cloned()
        .unwrap_or_default();
    let publish = publish_specs(conf)?;
    let containers = api.containers().await?;
    let id = match find_cni(&containers, &env.container_id) {
        Some(c) if c.netns_path.as_os_str() == env.netns.as_str() => {
            if let Some((on, _)) = result::endpoint(c, &env.ifname) {
                if on == net_name {
                    // ADD again: answer what is there.
                    return result::build(&conf.cni_version, c, &env.ifname);
                }
                return fail(
                    INVALID_ENV,
                    format!(
                        "interface {} of container {} is attached to network {on}; DEL it first",
                        env.ifname, env.container_id
                    ),
                );
            }
            if let Some(ep) = c.network(&net_name) {
                return fail(
                    INVALID_ENV,
                    format!(
                        "container {} is already on network {net_name} as {:?}",
                        env.container_id, ep.interface
                    ),
                );
            }
            connect(api, c, &net_name, env, ips, mac, aliases, &publish).await?
        }
        stale => {
            if let Some(old) = stale {
                // The same CNI id in another netns: its DEL never came.
                match api.remove_container(&old.id).await {
                    Ok(_) => {}
                    Err(f) if f.not_found() => {}
                    Err(f) => return Err(f.into()),
                }
            }
            let mut labels = BTreeMap::new();
            labels.insert(LABEL_CONTAINER_ID.to_string(), env.container_id.clone());
            let req = ContainerAdd {
                name: container_name(env, &containers),
                netns: PathBuf::from(&env.netns),
                network: Some(net.id.clone()),
                ip: ips.0,
                ip6: ips.1,
                aliases,
                publish,
                ifname: Some(env.ifname.clone()),
                mac,
                origin: Some(ORIGIN_CNI.to_string()),
                labels,
            };
            api.add_container(&req).await?
        }
    };
    let view = api.container(&id).await?;
    result::build(&conf.cni_version, &view, &env.ifname)
}

#[allow(clippy::too_many_arguments)]
async fn connect(
    api: &AgentApi,
    c: &ContainerView,
    net_name: &str,
    env: &Env,
    (ip, ip6): (Option<Ipv4Addr>, Option<Ipv6Addr>),
    mac: Option<String>,
    aliases: Vec<String>,
    publish: &[String],
) -> CniResult<String> {
    // Ports lead to the first attachment; runtimes pass the same mappings
    // to every network's ADD.
    // Every IPv4 address shows as no host address (`0.0.0.0:` asks for it).
    let published: Vec<String> = c
        .ports
        .iter()
        .map(|p| {
            let ip = match p.host_ip {
                IpAddr::V4(a) if a.is_unspecified() => String::new(),
                ip => spec_host(ip),
            };
            format!("{ip}{}:{}/{}", p.host_port, p.container_port, p.protocol)
        })
        .collect();
    let extra = publish
        .iter()
        .find(|p| !published.contains(&p.trim_start_matches("0.0.0.0:").to_string()));
    if let Some(extra) = extra {
        return fail(
            AGENT_REFUSED,
            format!("port {extra} can only be published on the container's first network"),
        );
    }
    let id = c.id.clone();
    let req = NetworkConnect {
        container: id.clone(),
        ip,
        ip6,
        aliases,
        ifname: Some(env.ifname.clone()),
        mac,
    };
    api.connect(net_name, &req).await?;
    Ok(id)
}

/// Removes one attachment: the whole container when it is its last one.
pub async fn detach(api: &AgentApi, c: &ContainerView, net_name: &str) -> CniResult<()> {
    let id = c.id.clone();
    let done = if c.networks.len() <= 1 {
        api.remove_container(&id).await.map(drop)
    } else {
        let req = NetworkDisconnect {
            container: id,
            unpublish: true,
        };
        api.disconnect(net_name, &req).await.map(drop)
    };
    match done {
        Ok(_) => Ok(()),
        Err(f) if f.not_found() => Ok(()),
        Err(f) => Err(CniError::from(f)),
    }
}

/// DEL: whatever is left of the attachment goes; nothing left is success.
pub async fn del(api: &AgentApi, env: &Env, conf: &NetConf) -> CniResult<()> {
    let containers = api.containers().await?;
    let Some(c) = find_cni(&containers, &env.container_id) else {
        return Ok(());
    };
    match result::endpoint(c, &env.ifname) {
        Some((net_name, ep)) if on_network(net_name, ep, &conf.network) => {
            detach(api, c, net_name).await
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(args: &str, id: &str) -> Env {
        Env {
            command: crate::cni::env::Command::Add,
            container_id: id.into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: crate::cni::env::CniArgs::parse(args).unwrap(),
        }
    }

    #[test]
    fn container_names_follow_the_runtime() {
        let none: Vec<ContainerView> = Vec::new();
        let k8s = env_with("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0", "abc");
        assert_eq!(container_name(&k8s, &none), "web-0.default");
        let podman = env_with("IgnoreUnknown=1;K8S_POD_NAME=web", "abc");
        assert_eq!(container_name(&podman, &none), "web");
        let ctr = env_with("", "default-one");
        assert_eq!(container_name(&ctr, &none), "default-one");
        let taken: Vec<ContainerView> = serde_json::from_value(serde_json::json!([{
            "Name": "web", "Id": "1", "Created": "", "NetnsPath": "", "Ports": [],
            "Mode": "bridge", "Networks": {}, "Dns": [], "Origin": null, "Labels": {},
            "Owner": "netd"
        }]))
        .unwrap();
        assert_eq!(container_name(&podman, &taken), "cni-abc");
    }

    #[test]
    fn names_are_netd_names() {
        assert_eq!(sanitize("web"), "web");
        assert_eq!(sanitize("_x/y"), "c_x-y");
        assert_eq!(sanitize(&"a".repeat(80)).len(), 64);
    }
}
