//! `netd status`: aligned lines and tables for people, `--format json` for
//! machines.
use anyhow::Result;

use super::{
    args::{Format, StatusArgs},
    output::{json, render_table},
};
use crate::{
    api::client::Client,
    schema::{ClusterStatus, StatusView},
};

pub async fn run(client: &Client, args: StatusArgs) -> Result<()> {
    let status: StatusView = client.get("/v1/status").await?;
    if let Format::Json = args.format {
        json(&status);
        return Ok(());
    }
    print!("{}", render(&status));
    Ok(())
}

/// A list as a person reads it: a comma list, `-` for none.
fn plain_list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

/// `key   value` lines with the values aligned.
fn lines(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}   {v}\n"))
        .collect()
}

fn render(s: &StatusView) -> String {
    let mut out = String::new();
    let revision = if s.git_revision.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.git_revision)
    };
    let ct = &s.conntrack;
    let timeouts = ct
        .timeouts
        .iter()
        .map(|(k, v)| format!("{k} {v}s"))
        .collect::<Vec<_>>()
        .join(", ");
    let reconciled = s.last_reconcile.at.as_deref().unwrap_or("-");
    out.push_str(&lines(&[
        (
            "agent",
            format!(
                "netd {}{revision}, pid {}, up {}s",
                s.version, s.pid, s.uptime_seconds
            ),
        ),
        ("state dir", s.state_dir.display().to_string()),
        ("run dir", s.run_dir.display().to_string()),
        (
            "bpffs",
            format!(
                "{} (map layout v{})",
                s.bpffs.display(),
                s.map_layout_version
            ),
        ),
        ("networks", s.networks.to_string()),
        ("containers", s.containers.to_string()),
        ("programs", plain_list(&s.programs)),
        ("pinned links", s.pinned_links.to_string()),
        (
            "conntrack",
            format!(
                "{} / {} flows, IPv6 {} / {}",
                ct.flows, ct.capacity, ct.flows6, ct.capacity
            ),
        ),
        ("ct timeouts", timeouts),
        ("snat ports", s.snat_ports.clone()),
        ("host routing", s.host_routing.mode.clone()),
        (
            "monitors",
            format!(
                "{} (events: {}; {} held back by the rate limit)",
                s.events.monitors,
                plain_list(&s.events.types),
                s.events.suppressed
            ),
        ),
        ("dns upstreams", plain_list(&s.dns.upstreams)),
        (
            "last reconcile",
            format!("{reconciled}, {} repairs", s.last_reconcile.repairs.len()),
        ),
    ]));
    let section = |out: &mut String, headers: &[&str], rows: Vec<Vec<String>>| {
        out.push('\n');
        out.push_str(&render_table(headers, &rows));
    };
    let rows = s
        .maps
        .iter()
        .map(|(name, m)| vec![name.clone(), m.entries.to_string(), m.capacity.to_string()])
        .collect();
    section(&mut out, &["MAP", "ENTRIES", "CAPACITY"], rows);
    let rows: Vec<Vec<String>> = s
        .uplinks
        .iter()
        .map(|(name, u)| {
            let address = u.address.map_or_else(|| "-".to_string(), |a| a.to_string());
            let address6 = u
                .address6
                .map_or_else(|| "-".to_string(), |a| a.to_string());
            vec![name.clone(), u.ifindex.to_string(), address, address6]
        })
        .collect();
    if !rows.is_empty() {
        let headers = [
            "UPLINK",
            "IFINDEX",
            "MASQUERADE ADDRESS",
            "IPV6 MASQUERADE ADDRESS",
        ];
        section(&mut out, &headers, rows);
    }
    let rows = s
        .drops
        .iter()
        .map(|(reason, n)| vec![reason.clone(), n.to_string()])
        .collect();
    section(&mut out, &["DROP REASON", "PACKETS"], rows);
    let routing = &s.host_routing;
    let mut rows = Vec::new();
    for (counts, outcome) in [
        (&routing.shortcuts, "delivered"),
        (&routing.fallbacks, "to the kernel"),
    ] {
        rows.extend(
            counts
                .iter()
                .map(|(name, n)| vec![name.clone(), outcome.to_string(), n.to_string()]),
        );
    }
    if !rows.is_empty() {
        section(&mut out, &["HOST ROUTING", "OUTCOME", "PACKETS"], rows);
    }
    let rows: Vec<Vec<String>> = s
        .network_counters
        .iter()
        .map(|(name, c)| {
            vec![
                name.clone(),
                c.packets_in.to_string(),
                c.bytes_in.to_string(),
                c.packets_out.to_string(),
                c.bytes_out.to_string(),
                c.total_drops().to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        section(
            &mut out,
            &[
                "NETWORK",
                "PACKETS IN",
                "BYTES IN",
                "PACKETS OUT",
                "BYTES OUT",
                "DROPS",
            ],
            rows,
        );
    }
    if let Some(c) = &s.cluster {
        render_cluster(&mut out, c);
    }
    let rows = s
        .dns
        .counts()
        .iter()
        .map(|(k, v)| vec![k.replace('_', " "), v.to_string()])
        .collect();
    section(&mut out, &["DNS", "COUNT"], rows);
    out
}

/// The cluster lines and tables.
fn render_cluster(out: &mut String, c: &ClusterStatus) {
    let reach = if c.reachable {
        "reachable".to_string()
    } else {
        format!("UNREACHABLE ({})", c.last_error.as_deref().unwrap_or("-"))
    };
    out.push('\n');
    out.push_str(&lines(&[
        ("cluster store", format!("{} {reach}", plain_list(&c.store))),
        (
            "this host",
            format!(
                "{} {} (tunnel address {})",
                c.hostname, c.host_id, c.advertise_address
            ),
        ),
        (
            "cluster view",
            format!(
                "revision {}, last contact {}",
                c.revision,
                c.last_contact.as_deref().unwrap_or("-")
            ),
        ),
    ]));
    let hosts: Vec<Vec<String>> = c
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.hostname.clone(),
                h.id.clone(),
                h.address.to_string(),
                h.is_self.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render_table(
        &["HOST", "ID", "TUNNEL ADDRESS", "SELF"],
        &hosts,
    ));
    let remote: Vec<Vec<String>> = c
        .remote_endpoints
        .iter()
        .map(|r| {
            vec![
                r.network.clone(),
                r.container.clone(),
                r.ip.to_string(),
                r.host.clone(),
                r.host_address.to_string(),
            ]
        })
        .collect();
    if !remote.is_empty() {
        out.push('\n');
        out.push_str(&render_table(
            &[
                "OVERLAY NETWORK",
                "REMOTE CONTAINER",
                "ADDRESS",
                "HOST",
                "VIA",
            ],
            &remote,
        ));
    }
    for conflict in &c.conflicts {
        out.push_str(&format!("conflict: {conflict}\n"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::schema::StatusView;

    #[test]
    fn people_get_lines_and_tables_without_json() {
        let s: StatusView = serde_json::from_value(json!({
            "version": "0.1.0", "git_revision": "abc123", "pid": 7, "uptime_seconds": 3,
            "state_dir": "/var/lib/netd", "run_dir": "/run/netd", "bpffs": "/sys/fs/bpf/netd",
            "map_layout_version": 1, "networks": 2, "containers": 1,
            "programs": ["from_container", "to_container"], "pinned_links": 4,
            "maps": { "ENDPOINTS": { "entries": 1, "capacity": 4096 } },
            "conntrack": { "flows": 3, "flows6": 2, "capacity": 65536, "timeouts": { "tcp": 7440 } },
            "snat_ports": "61000-65535",
            "uplinks": { "eth0": { "ifindex": 2, "address": "192.0.2.10" } },
            "drops": { "policy-denied": 5 },
            "host_routing": { "mode": "ebpf", "shortcuts": { "peer-same-network": 3 },
                              "fallbacks": { "frag-needed": 1 } },
            "dns": { "upstreams": ["192.0.2.53:53"], "queries": 9 },
            "last_reconcile": { "at": "2026-01-01T00:00:00Z", "repairs": [] },
        }))
        .unwrap();
        let text = super::render(&s);
        assert!(!text.contains('"') && !text.contains('['), "{text}");
        assert!(
            text.contains("programs         from_container, to_container\n"),
            "{text}"
        );
        assert!(text.contains("eth0     2         192.0.2.10"), "{text}");
        assert!(text.contains("dns upstreams    192.0.2.53:53"), "{text}");
        assert!(text.contains("netd 0.1.0 (abc123), pid 7"), "{text}");
        assert!(text.contains("policy-denied   5"), "{text}");
        assert!(text.contains("host routing     ebpf\n"), "{text}");
        assert!(
            text.contains("conntrack        3 / 65536 flows, IPv6 2 / 65536\n"),
            "{text}"
        );
        assert!(
            text.contains("peer-same-network   delivered       3"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("queries ") && l.ends_with(" 9")),
            "{text}"
        );
    }

    #[test]
    fn the_cluster_is_shown_when_there_is_one() {
        let c: crate::schema::ClusterStatus = serde_json::from_value(json!({
            "store": ["http://198.51.100.100:2379"], "reachable": false,
            "last_error": "lease renewal timed out", "hostname": "h1",
            "host_id": "abc", "advertise_address": "198.51.100.1", "revision": 9,
            "last_contact": "2026-01-01T00:00:00Z", "sessions": 2, "lease": 0,
            "overlay_networks": 1,
            "hosts": [{ "hostname": "h1", "id": "abc", "address": "198.51.100.1",
                        "since": "2026-01-01T00:00:00Z", "self": true }],
            "remote_endpoints": [{ "network": "ov", "container": "web", "ip": "10.0.0.3",
                                   "host": "h2", "host_address": "198.51.100.2" }],
            "conflicts": ["x: this host has a network named x already"],
        }))
        .unwrap();
        let mut out = String::new();
        super::render_cluster(&mut out, &c);
        assert!(
            out.contains("UNREACHABLE (lease renewal timed out)"),
            "{out}"
        );
        assert!(out.contains("tunnel address 198.51.100.1"), "{out}");
        assert!(out.contains("web") && out.contains("198.51.100.2"), "{out}");
        assert!(out.contains("conflict: x:"), "{out}");
        let alone = super::render(&StatusView::default());
        assert!(!alone.contains("cluster store"), "{alone}");
    }
}
