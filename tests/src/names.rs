//! Names as a container sees them: `dig` against netd's resolver on
//! 127.0.0.11 inside a netns, and reverse names.
use std::net::Ipv6Addr;
use std::time::Duration;

use crate::cmd::run_timeout;

/// `dig @127.0.0.11 name qtype +short` inside netns `ns`: the answer lines, or the
/// status line when there are none (`NXDOMAIN`, `NOERROR`).
pub fn dig(ns: &str, name: &str, qtype: &str) -> Vec<String> {
    dig_with(ns, name, qtype, &[])
}

/// [`dig`] with more dig options (`+tcp`).
pub fn dig_with(ns: &str, name: &str, qtype: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "netns",
        "exec",
        ns,
        "dig",
        "@127.0.0.11",
        name,
        qtype,
        "+time=2",
        "+tries=2",
        "+noall",
        "+comments",
        "+answer",
    ];
    args.extend_from_slice(extra);
    let out = run_timeout("ip", &args, Duration::from_secs(15));
    assert!(out.success(), "dig {name} {qtype} {extra:?} in {ns}: {out}");
    let mut lines: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect();
    if lines.is_empty() {
        let status = out
            .stdout
            .split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("NO-ANSWER");
        lines.push(status.to_string());
    }
    lines
}

/// The ip6.arpa name of `ip`.
pub fn arpa(ip: Ipv6Addr) -> String {
    let nibbles: Vec<String> = ip
        .octets()
        .iter()
        .rev()
        .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
        .collect();
    format!("{}.ip6.arpa", nibbles.join("."))
}
