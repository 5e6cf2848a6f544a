//! Names as a container sees them: `dig` against netd's resolver on
//! 127.0.0.11 inside a netns, and reverse names.
use std::net::Ipv6Addr;
use std::time::Duration;

use crate::cmd::{run_timeout, Out};

/// `dig @127.0.0.11 name qtype +short` inside netns `ns`: the answer lines, or the
/// status line when there are none (`NXDOMAIN`, `NOERROR`).
pub fn dig(ns: &str, name: &str, qtype: &str) -> Vec<String> {
    dig_with(ns, name, qtype, &[])
}

/// [`dig`] with more dig options (`+tcp`).
pub fn dig_with(ns: &str, name: &str, qtype: &str, extra: &[&str]) -> Vec<String> {
    let opts = [&["+time=2", "+tries=2"][..], extra].concat();
    let out = dig_out(ns, name, qtype, &opts, Duration::from_secs(15));
    assert!(out.success(), "dig {name} {qtype} {extra:?} in {ns}: {out}");
    let mut lines: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect();
    if lines.is_empty() {
        lines.push(dig_status(&out.stdout));
    }
    lines
}

/// `dig @127.0.0.11 name qtype OPTS +noall +comments +answer` inside
/// netns `ns`, bounded by `limit`.
pub fn dig_out(ns: &str, name: &str, qtype: &str, opts: &[&str], limit: Duration) -> Out {
    let mut args = vec!["netns", "exec", ns, "dig", "@127.0.0.11", name, qtype];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["+noall", "+comments", "+answer"]);
    run_timeout("ip", &args, limit)
}

/// The status of a [`dig_out`] answer (`NOERROR`, `NXDOMAIN`, ...), or
/// `NO-ANSWER` when it shows none.
pub fn dig_status(stdout: &str) -> String {
    stdout
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO-ANSWER")
        .to_string()
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
