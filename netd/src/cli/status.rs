//! `netd status`: aligned lines and tables for people, `--format json` for
//! machines.
use anyhow::Result;
use serde_json::Value;

use super::{
    args::{Format, StatusArgs},
    output::{json, render_table},
};
use crate::api::client::Client;

pub async fn run(client: &Client, args: StatusArgs) -> Result<()> {
    let status = client.get("/v1/status").await?;
    if let Format::Json = args.format {
        json(&status);
        return Ok(());
    }
    print!("{}", render(&status));
    Ok(())
}

/// A JSON value as a person reads it: strings without quotes, arrays as
/// comma lists, nothing for null.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(plain).collect();
            if items.is_empty() {
                "-".to_string()
            } else {
                items.join(", ")
            }
        }
        other => other.to_string(),
    }
}

/// `key   value` lines with the values aligned.
fn lines(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}   {v}\n"))
        .collect()
}

fn render(s: &Value) -> String {
    let mut out = String::new();
    let revision = match s["git_revision"].as_str() {
        Some(r) => format!(" ({r})"),
        None => String::new(),
    };
    let ct = &s["conntrack"];
    let timeouts = ct["timeouts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}s"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let repairs = s["last_reconcile"]["repairs"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    out.push_str(&lines(&[
        (
            "agent",
            format!(
                "netd {}{revision}, pid {}, up {}s",
                plain(&s["version"]),
                plain(&s["pid"]),
                plain(&s["uptime_seconds"])
            ),
        ),
        ("state dir", plain(&s["state_dir"])),
        ("run dir", plain(&s["run_dir"])),
        (
            "bpffs",
            format!(
                "{} (map layout v{})",
                plain(&s["bpffs"]),
                plain(&s["map_layout_version"])
            ),
        ),
        ("networks", plain(&s["networks"])),
        ("containers", plain(&s["containers"])),
        ("programs", plain(&s["programs"])),
        ("pinned links", plain(&s["pinned_links"])),
        (
            "conntrack",
            format!("{} / {} flows", plain(&ct["flows"]), plain(&ct["capacity"])),
        ),
        ("ct timeouts", timeouts),
        ("snat ports", plain(&s["snat_ports"])),
        ("host routing", plain(&s["host_routing"]["mode"])),
        (
            "monitors",
            format!(
                "{} (events: {}; {} held back by the rate limit)",
                plain(&s["events"]["monitors"]),
                plain(&s["events"]["types"]),
                plain(&s["events"]["suppressed"])
            ),
        ),
        ("dns upstreams", plain(&s["dns"]["upstreams"])),
        (
            "last reconcile",
            format!("{}, {repairs} repairs", plain(&s["last_reconcile"]["at"])),
        ),
    ]));
    let section = |out: &mut String, headers: &[&str], rows: Vec<Vec<String>>| {
        out.push('\n');
        out.push_str(&render_table(headers, &rows));
    };
    if let Some(maps) = s["maps"].as_object() {
        let rows = maps
            .iter()
            .map(|(name, m)| vec![name.clone(), plain(&m["entries"]), plain(&m["capacity"])])
            .collect();
        section(&mut out, &["MAP", "ENTRIES", "CAPACITY"], rows);
    }
    if let Some(uplinks) = s["uplinks"].as_object() {
        let rows: Vec<Vec<String>> = uplinks
            .iter()
            .map(|(name, u)| vec![name.clone(), plain(&u["ifindex"]), plain(&u["address"])])
            .collect();
        if !rows.is_empty() {
            section(&mut out, &["UPLINK", "IFINDEX", "MASQUERADE ADDRESS"], rows);
        }
    }
    if let Some(drops) = s["drops"].as_object() {
        let rows = drops
            .iter()
            .map(|(reason, n)| vec![reason.clone(), plain(n)])
            .collect();
        section(&mut out, &["DROP REASON", "PACKETS"], rows);
    }
    let routing = &s["host_routing"];
    let mut rows = Vec::new();
    for (key, outcome) in [("shortcuts", "delivered"), ("fallbacks", "to the kernel")] {
        if let Some(counts) = routing[key].as_object() {
            rows.extend(
                counts
                    .iter()
                    .map(|(name, n)| vec![name.clone(), outcome.to_string(), plain(n)]),
            );
        }
    }
    if !rows.is_empty() {
        section(&mut out, &["HOST ROUTING", "OUTCOME", "PACKETS"], rows);
    }
    if let Some(nets) = s["network_counters"].as_object() {
        let rows: Vec<Vec<String>> = nets
            .iter()
            .map(|(name, c)| {
                let drops: u64 = c["Drops"]
                    .as_object()
                    .map(|d| d.values().filter_map(Value::as_u64).sum())
                    .unwrap_or(0);
                vec![
                    name.clone(),
                    plain(&c["PacketsIn"]),
                    plain(&c["BytesIn"]),
                    plain(&c["PacketsOut"]),
                    plain(&c["BytesOut"]),
                    drops.to_string(),
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
    }
    render_cluster(&mut out, &s["cluster"]);
    if let Some(dns) = s["dns"].as_object() {
        let rows = dns
            .iter()
            .filter(|(k, _)| k.as_str() != "upstreams")
            .map(|(k, v)| vec![k.replace('_', " "), plain(v)])
            .collect();
        section(&mut out, &["DNS", "COUNT"], rows);
    }
    out
}

/// The cluster lines and tables (nothing without a cluster store).
fn render_cluster(out: &mut String, c: &Value) {
    if c.is_null() {
        return;
    }
    let reach = if c["reachable"].as_bool() == Some(true) {
        "reachable".to_string()
    } else {
        format!("UNREACHABLE ({})", plain(&c["last_error"]))
    };
    out.push('\n');
    out.push_str(&lines(&[
        ("cluster store", format!("{} {reach}", plain(&c["store"]))),
        (
            "this host",
            format!(
                "{} {} (tunnel address {})",
                plain(&c["hostname"]),
                plain(&c["host_id"]),
                plain(&c["advertise_address"])
            ),
        ),
        (
            "cluster view",
            format!(
                "revision {}, last contact {}",
                plain(&c["revision"]),
                plain(&c["last_contact"])
            ),
        ),
    ]));
    let rows = |key: &str, fields: &[&str]| -> Vec<Vec<String>> {
        c[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| fields.iter().map(|f| plain(&r[*f])).collect())
            .collect()
    };
    out.push('\n');
    out.push_str(&render_table(
        &["HOST", "ID", "TUNNEL ADDRESS", "SELF"],
        &rows("hosts", &["hostname", "id", "address", "self"]),
    ));
    let remote = rows(
        "remote_endpoints",
        &["network", "container", "ip", "host", "host_address"],
    );
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
    for conflict in c["conflicts"].as_array().into_iter().flatten() {
        out.push_str(&format!("conflict: {}\n", plain(conflict)));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn people_get_lines_and_tables_without_json() {
        let s = json!({
            "version": "0.1.0", "git_revision": "abc123", "pid": 7, "uptime_seconds": 3,
            "state_dir": "/var/lib/netd", "run_dir": "/run/netd", "bpffs": "/sys/fs/bpf/netd",
            "map_layout_version": 1, "networks": 2, "containers": 1,
            "programs": ["from_container", "to_container"], "pinned_links": 4,
            "maps": { "ENDPOINTS": { "entries": 1, "capacity": 4096 } },
            "conntrack": { "flows": 0, "capacity": 65536, "timeouts": { "tcp": 7440 } },
            "snat_ports": "61000-65535",
            "uplinks": { "eth0": { "ifindex": 2, "address": "192.0.2.10" } },
            "drops": { "policy-denied": 5 },
            "host_routing": { "mode": "ebpf", "shortcuts": { "peer-same-network": 3 },
                              "fallbacks": { "frag-needed": 1 } },
            "dns": { "upstreams": ["192.0.2.53:53"], "queries": 9 },
            "last_reconcile": { "at": "2026-01-01T00:00:00Z", "repairs": [] },
        });
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
            text.contains("peer-same-network   delivered       3"),
            "{text}"
        );
    }

    #[test]
    fn the_cluster_is_shown_when_there_is_one() {
        let c = json!({
            "store": ["http://198.51.100.100:2379"], "reachable": false,
            "last_error": "lease renewal timed out", "hostname": "h1",
            "host_id": "abc", "advertise_address": "198.51.100.1", "revision": 9,
            "last_contact": "2026-01-01T00:00:00Z",
            "hosts": [{ "hostname": "h1", "id": "abc", "address": "198.51.100.1", "self": true }],
            "remote_endpoints": [{ "network": "ov", "container": "web", "ip": "10.0.0.3",
                                   "host": "h2", "host_address": "198.51.100.2" }],
            "conflicts": ["x: this host has a network named x already"],
        });
        let mut out = String::new();
        super::render_cluster(&mut out, &c);
        assert!(
            out.contains("UNREACHABLE (lease renewal timed out)"),
            "{out}"
        );
        assert!(out.contains("tunnel address 198.51.100.1"), "{out}");
        assert!(out.contains("web") && out.contains("198.51.100.2"), "{out}");
        assert!(out.contains("conflict: x:"), "{out}");
        let mut none = String::new();
        super::render_cluster(&mut none, &serde_json::Value::Null);
        assert!(none.is_empty());
    }
}
