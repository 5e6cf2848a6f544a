//! The probes and the deny witness themselves. Without netd: two
//! namespaces joined by a veth, where a deny check must FAIL while the link
//! is open and pass once a blackhole drops everything (and then an allow
//! check must fail). With netd: a flow dropped by something other than
//! netd passes as "nothing got through" but fails the witness (no drop
//! counted), while a flow netd drops passes both.

use netd_tests::cmd::ip_ns;
use netd_tests::netns::Netns;
use netd_tests::traffic::{allow, check, deny, dropped, expect};
use netd_tests::{Bed, Ep};

/// Each protocol's check must have failed: one error naming it per flow.
fn failed_all_protocols(errs: &[String], what: &str) {
    for p in ["ICMP", "TCP", "UDP"] {
        assert!(
            errs.iter().any(|e| e.starts_with(p)),
            "{what}: the {p} check should have failed; failures: {errs:#?}"
        );
    }
    assert_eq!(errs.len(), 3, "{what}: {errs:#?}");
}

/// Makes `ns` drop everything that arrives from `peer` (a blackhole policy
/// rule on the input route lookup; this kernel has no tc actions).
fn blackhole_from(ns: &str, peer: &str) {
    ip_ns(ns, &["rule", "add", "pref", "100", "lookup", "local"]).unwrap();
    ip_ns(ns, &["rule", "del", "pref", "0"]).unwrap();
    ip_ns(
        ns,
        &["rule", "add", "pref", "10", "from", peer, "blackhole"],
    )
    .unwrap();
}

#[test]
fn probes_see_traffic_and_its_absence() {
    let id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let n1 = Netns::create(&format!("nt-{id}-p1")).unwrap();
    let n2 = Netns::create(&format!("nt-{id}-p2")).unwrap();
    let (a, b) = (n1.name(), n2.name());
    ip_ns(
        a,
        &[
            "link", "add", "v1", "type", "veth", "peer", "name", "v2", "netns", b,
        ],
    )
    .unwrap();
    for (ns, dev, addr) in [(a, "v1", "10.99.0.1/24"), (b, "v2", "10.99.0.2/24")] {
        ip_ns(ns, &["addr", "add", addr, "dev", dev]).unwrap();
        ip_ns(ns, &["link", "set", dev, "up"]).unwrap();
        ip_ns(ns, &["link", "set", "lo", "up"]).unwrap();
    }
    let ea = Ep::new("p1", a, "10.99.0.1".parse().unwrap());
    let eb = Ep::new("p2", b, "10.99.0.2".parse().unwrap());
    expect(&[allow(&ea, &eb), allow(&eb, &ea)]);
    // The link is open: "nothing gets through" must fail, for every probe.
    failed_all_protocols(&check(&[deny(&ea, &eb)]), "deny on an open link");
    failed_all_protocols(&check(&[deny(&eb, &ea)]), "deny on an open link");

    // Each side now drops what arrives from the other.
    blackhole_from(a, "10.99.0.2");
    blackhole_from(b, "10.99.0.1");
    expect(&[deny(&ea, &eb), deny(&eb, &ea)]);
    failed_all_protocols(&check(&[allow(&ea, &eb)]), "allow on a blackhole");
}

#[test]
fn the_witness_tells_netd_drops_from_other_losses() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.99.1.0/24"]);
    bed.network("net2", &["--subnet", "10.99.2.0/24"]);
    let a = bed.container("a", &["--network", "net1"]);
    let b = bed.container("b", &["--network", "net1"]);
    let c = bed.container("c", &["--network", "net2"]);
    let (ea, eb, ec) = (bed.ep(&a, "net1"), bed.ep(&b, "net1"), bed.ep(&c, "net2"));
    // netd drops a -> c: nothing gets through and the counter grows.
    bed.expect(&[dropped(&ea, &ec, "network-isolation"), allow(&ea, &eb)]);

    // b drops what a sends, netd forwards it: the probes see nothing, but
    // the witness fails, naming the counter that did not grow.
    blackhole_from(&b.ns, &ea.ip.to_string());
    expect(&[deny(&ea, &eb)]);
    let errs = bed.check(&[dropped(&ea, &eb, "network-isolation")]);
    assert!(
        errs.len() == 1 && errs[0].contains("drops[\"network-isolation\"] grew by"),
        "a flow b drops itself must fail the witness (and only that): {errs:#?}"
    );
    // A name status does not know is a failure too, not a pass.
    let errs = bed.check(&[dropped(&ea, &ec, "no-such-reason")]);
    assert!(
        errs.len() == 1 && errs[0].contains("no drop counter"),
        "{errs:#?}"
    );
}
