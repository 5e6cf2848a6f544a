//! The probes themselves, without netd: two namespaces joined by a veth. A
//! `tc` drop on one end must turn every "allowed" probe into "dropped", so
//! the negative probes cannot pass by accident.

use netd_tests::cmd::ip_ns;
use netd_tests::netns::Netns;
use netd_tests::traffic::{allow, deny, expect};
use netd_tests::Ep;

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

    // Each side now drops what arrives from the other (a blackhole policy
    // rule on the input route lookup; this kernel has no tc actions).
    for (ns, peer) in [(a, "10.99.0.2"), (b, "10.99.0.1")] {
        ip_ns(ns, &["rule", "add", "pref", "100", "lookup", "local"]).unwrap();
        ip_ns(ns, &["rule", "del", "pref", "0"]).unwrap();
        ip_ns(
            ns,
            &["rule", "add", "pref", "10", "from", peer, "blackhole"],
        )
        .unwrap();
    }
    expect(&[deny(&ea, &eb), deny(&eb, &ea)]);
}
