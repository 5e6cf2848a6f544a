//! Link-local IPv6 crosses a bridge without routing: it follows icc.
use std::time::Duration;

use netd_tests::{
    bed::Bed,
    cmd::{ip_ns, run_timeout},
    wait::wait_for,
};

/// Echo requests of the denied ping: the icc-disabled counter must grow by
/// at least this many, more than the containers' own IPv6 (router
/// solicitations, MLD reports, also icc-disabled) gives in that time.
const DENIED_PINGS: u64 = 20;

/// The link-local address of eth0 once duplicate address detection is done.
fn link_local(ns: &str) -> String {
    let what = format!("a usable link-local address in {ns}");
    wait_for(&what, Duration::from_secs(10), || {
        let out = run_timeout(
            "ip",
            &[
                "-n", ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
            ],
            Duration::from_secs(5),
        );
        let line = out.stdout.lines().next().unwrap_or_default().to_string();
        if line.is_empty() || line.contains("tentative") {
            return Err(out.stdout);
        }
        let addr = line.split_whitespace().nth(3).unwrap_or_default();
        Ok(addr.split('/').next().unwrap_or_default().to_string())
    })
    .0
}

fn ping6(from: &str, to: &str) -> bool {
    let target = format!("{to}%eth0");
    run_timeout(
        "ip",
        &[
            "netns", "exec", from, "ping", "-6", "-c", "1", "-W", "1", &target,
        ],
        Duration::from_secs(5),
    )
    .success()
}

/// The MAC address of eth0 in `ns`.
fn mac(ns: &str) -> String {
    let out = ip_ns(ns, &["-o", "link", "show", "dev", "eth0"]).unwrap_or_else(|e| panic!("{e:#}"));
    out.split("link/ether ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC for eth0 in {ns}: {out}"))
        .to_string()
}

/// [`DENIED_PINGS`] echo requests from `from` to `to` get no reply (exit
/// code 1: sent, nothing came back); anything else is a harness problem.
fn no_ping6(from: &str, to: &str) -> Result<(), String> {
    let target = format!("{to}%eth0");
    let count = DENIED_PINGS.to_string();
    let out = run_timeout(
        "ip",
        &[
            "netns", "exec", from, "ping", "-6", "-n", "-c", &count, "-i", "0.02", "-W", "1",
            &target,
        ],
        Duration::from_secs(10),
    );
    match out.code {
        Some(1) => Ok(()),
        Some(0) => Err(format!("link-local IPv6 got through:\n{out}")),
        _ => Err(format!("harness: ping -6 did not run properly:\n{out}")),
    }
}

#[test]
fn link_local_ipv6_follows_icc() {
    let bed = Bed::new();
    bed.network("open", &["--subnet", "10.97.1.0/24"]);
    bed.network("closed", &["--subnet", "10.97.2.0/24", "--icc=false"]);
    let a = bed.container("a", &["--network", "open"]);
    let b = bed.container("b", &["--network", "open"]);
    let c = bed.container("c", &["--network", "closed"]);
    let d = bed.container("d", &["--network", "closed"]);
    let (b6, d6) = (link_local(&b.ns), link_local(&d.ns));
    link_local(&a.ns);
    link_local(&c.ns);
    assert!(ping6(&a.ns, &b6), "icc on: link-local IPv6 must pass");
    // Control on the same veth: c's IPv4 to its gateway passes.
    let gw = bed.gateway("closed");
    bed.ping_host(&c.ns, gw)
        .unwrap_or_else(|e| panic!("control: c -> gateway {gw}: {e:#}"));
    // c knows d's MAC, so every echo request leaves c (without it, only
    // neighbour solicitations would, and the pings would die in c).
    ip_ns(
        &c.ns,
        &[
            "-6",
            "neigh",
            "replace",
            &d6,
            "lladdr",
            &mac(&d.ns),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let before = bed.drop_count("icc-disabled");
    if let Err(e) = no_ping6(&c.ns, &d6) {
        panic!("icc off: link-local IPv6 c -> d must be dropped: {e}");
    }
    let grew = bed.drop_count("icc-disabled") - before;
    assert!(
        grew >= DENIED_PINGS,
        "drops[\"icc-disabled\"] grew by {grew} during {DENIED_PINGS} denied pings: the \
         pings were lost somewhere other than netd's icc check; drops = {:?}",
        bed.drops()
    );
}
