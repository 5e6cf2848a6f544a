//! CHECK (the kernel still matches the attachment) and GC (attachments the
//! runtime no longer knows go).
use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    agent::AgentApi,
    attach::{cni_id, detach, find_cni, on_network},
    config::NetConf,
    env::Env,
    error::{
        fail, CniError, CniResult, CHECK_FAILED, INCOMPATIBLE_VERSION, INVALID_CONFIG,
        UNKNOWN_CONTAINER,
    },
    result,
};
use crate::schema::EndpointView;

pub async fn check(api: &AgentApi, env: &Env, conf: &NetConf) -> CniResult<()> {
    let containers = api.containers().await?;
    let Some(c) = find_cni(&containers, &env.container_id) else {
        return fail(
            UNKNOWN_CONTAINER,
            format!(
                "netd has no container for CNI container {}",
                env.container_id
            ),
        );
    };
    let Some((net_name, ep)) = result::endpoint(c, &env.ifname) else {
        return fail(
            UNKNOWN_CONTAINER,
            format!(
                "container {} has no interface {}",
                env.container_id, env.ifname
            ),
        );
    };
    let mut problems = Vec::new();
    if !on_network(net_name, ep, &conf.network) {
        problems.push(format!(
            "{} is on network {net_name}, not {}",
            env.ifname, conf.network
        ));
    }
    if c.netns_path.as_os_str() != env.netns.as_str() {
        problems.push(format!(
            "the container's netns is {}, not {}",
            c.netns_path.display(),
            env.netns
        ));
    }
    problems.extend(api.check(&c.id, &env.ifname).await?);
    if let Some(prev) = &conf.prev_result {
        problems.extend(compare_prev(prev, ep, &env.ifname));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            CHECK_FAILED,
            format!(
                "attachment {}/{} is not as netd set it up",
                env.container_id, env.ifname
            ),
        )
        .with_details(problems.join("; ")))
    }
}

/// What `prevResult` says that the agent no longer has: each address on
/// our interface against the endpoint's address of its family.
fn compare_prev(prev: &Value, ep: &EndpointView, ifname: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (have4, have6) = (result::address4(ep), result::address6(ep));
    let interfaces = prev["interfaces"].as_array().cloned().unwrap_or_default();
    for ip in prev["ips"].as_array().into_iter().flatten() {
        let on_ours = ip["interface"]
            .as_u64()
            .and_then(|i| interfaces.get(i as usize))
            .is_none_or(|i| i["name"].as_str() == Some(ifname));
        let addr = ip["address"].as_str().unwrap_or_default();
        let have = if addr.contains(':') { &have6 } else { &have4 };
        if on_ours && have.as_deref() != Some(addr) {
            let have = have.as_deref().unwrap_or("no address of that family");
            problems.push(format!("prevResult address {addr} differs from {have}"));
        }
    }
    problems
}

pub async fn gc(api: &AgentApi, conf: &NetConf) -> CniResult<()> {
    if !conf.at_least("1.1.0") {
        return fail(
            INCOMPATIBLE_VERSION,
            format!(
                "GC needs cniVersion 1.1.0, the config has {}",
                conf.cni_version
            ),
        );
    }
    let Some(valid) = &conf.valid_attachments else {
        return fail(
            INVALID_CONFIG,
            "GC needs \"cni.dev/valid-attachments\" (an empty list removes every attachment)",
        );
    };
    let valid: BTreeSet<(&str, &str)> = valid
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let mut errors = Vec::new();
    for c in api.containers().await? {
        let Some(cni_id) = cni_id(&c) else {
            continue;
        };
        let stale: Vec<String> = c
            .networks
            .iter()
            .filter(|(name, ep)| on_network(name, ep, &conf.network))
            .filter(|(_, ep)| !valid.contains(&(cni_id, ep.interface.as_str())))
            .map(|(name, _)| name.clone())
            .collect();
        for net_name in stale {
            // Re-read: an earlier detach may have changed the container.
            let current = match api.container(&c.id).await {
                Ok(v) => v,
                Err(f) if f.not_found() => break,
                Err(f) => return Err(f.into()),
            };
            if let Err(e) = detach(api, &current, &net_name).await {
                errors.push(e.to_string());
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            super::error::AGENT_REFUSED,
            "GC could not remove every stale attachment",
        )
        .with_details(errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ep(v4: &str, v6: &str) -> EndpointView {
        serde_json::from_value(json!({
            "NetworkID": "n1", "IPAddress": v4, "IPPrefixLen": 24, "PrefixLen": 24,
            "Gateway": "", "GlobalIPv6Address": v6, "GlobalIPv6PrefixLen": 64,
            "MacAddress": "02:42:0a:09:00:02", "Interface": "eth0",
            "HostInterface": "nd0123456789a", "Aliases": [], "DefaultRoute": true,
            "MTU": 1500, "Counters": null
        }))
        .unwrap()
    }

    fn prev(addrs: &[&str]) -> Value {
        let ips: Vec<Value> = addrs
            .iter()
            .map(|a| json!({"address": a, "interface": 1}))
            .collect();
        json!({"interfaces": [{"name": "nd0123456789a"}, {"name": "eth0"}], "ips": ips})
    }

    #[test]
    fn prev_result_addresses_compare_by_family() {
        let dual = ep("10.9.0.2", "fd00:9::2");
        let p = prev(&["10.9.0.2/24", "fd00:9::2/64"]);
        assert_eq!(compare_prev(&p, &dual, "eth0"), Vec::<String>::new());
        let only6 = ep("", "fd00:9::2");
        let p6 = prev(&["fd00:9::2/64"]);
        assert_eq!(compare_prev(&p6, &only6, "eth0"), Vec::<String>::new());
        assert_eq!(
            compare_prev(&prev(&["fd00:9::3/64"]), &dual, "eth0").len(),
            1
        );
        assert_eq!(compare_prev(&p, &only6, "eth0").len(), 1, "an IPv4 gone");
        let v4 = ep("10.9.0.2", "");
        assert_eq!(compare_prev(&p, &v4, "eth0").len(), 1, "an IPv6 gone");
    }
}
