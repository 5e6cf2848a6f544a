//! netd as dockerd's network driver (issue 11): a real dockerd 20.10 in the
//! bed's host netns drives netd with `docker network create -d netd`,
//! `docker run --network`, `-p`, `docker network connect/disconnect` and
//! `docker rm`; packets between the containers' netns show who gets through.
//! Skips (saying so) where docker.io is not installed.

use netd_tests::docker::{Dockerd, Options};
use netd_tests::{blocked, blocked_both, reach, reach_both, Bed};

/// dockerd with its defaults (`--iptables=true`): it sets the host's
/// FORWARD policy to DROP and turns on br_netfilter, which netd's eBPF host
/// routing must not care about.
fn options() -> Options {
    Options::default()
}

/// A bed whose dockerd starts first (as on a fresh host: it may turn on
/// ip_forward and set its firewall), then the agent.
fn bed_with_docker(bed: &Bed, opts: Options) -> Option<Dockerd<'_>> {
    let hostile = opts.iptables;
    let d = Dockerd::start(bed, opts)?;
    if hostile {
        d.assert_docker_firewall();
    }
    bed.start_agent();
    Some(d)
}

#[test]
fn networks_isolate_and_follow_docker_options() {
    let bed = Bed::without_agent(&[]);
    let Some(d) = bed_with_docker(&bed, options()) else {
        return;
    };
    let n1 = d.network("n1", &["--subnet", "10.91.1.0/24"]);
    d.network("n2", &[]);
    // netd knows Docker's networks by Docker's id, and says whose they are.
    let v = bed.net_info(&n1);
    assert_eq!(v["Owner"], "docker", "{v}");
    assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.91.1.0/24", "{v}");
    assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "10.91.1.1", "{v}");
    let a = d.run("ca", &["--network", "n1"]);
    let b = d.run("cb", &["--network", "n1"]);
    let c = d.run("cc", &["--network", "n2"]);
    let (ea, eb, ec) = (d.ep(&a, "n1"), d.ep(&b, "n1"), d.ep(&c, "n2"));
    assert!(ea.ip.octets()[..3] == [10, 91, 1], "a got {}", ea.ip);
    // Same network: every protocol, both ways, with the sender's address.
    reach_both(&ea, &eb);
    // Docker's embedded DNS still answers on netd networks.
    d.ok(&["exec", "ca", "ping", "-c1", "-W2", "cb"]);
    // Other network: nothing, by address (counted) or by name.
    let before = bed.drop_count("network-isolation");
    blocked_both(&ea, &ec);
    let after = bed.drop_count("network-isolation");
    assert!(
        after > before,
        "cross-network probes must be dropped by netd (network-isolation {before} -> {after})"
    );
    let err = d.fail(&["exec", "ca", "ping", "-c1", "-W1", "cc"]);
    assert!(
        err.contains("bad address"),
        "c must not resolve from a: {err}"
    );
    // The endpoints are netd containers, named by endpoint id.
    let ls = bed.json(&["container", "ls", "--format", "json"]);
    let eps = ls.as_array().expect("container ls is an array");
    assert_eq!(eps.len(), 3, "one netd container per Docker endpoint: {ls}");
    for e in eps {
        assert_eq!(e["Owner"], "docker", "{e}");
    }
    // netd's own verbs leave Docker's objects to Docker.
    let name = eps[0]["Name"].as_str().unwrap().to_string();
    let msg = bed.fail(&["container", "rm", &name]);
    assert!(msg.contains("Docker"), "{msg}");
    let msg = bed.fail(&["network", "rm", &n1]);
    assert!(msg.contains("docker network rm"), "{msg}");
}

#[test]
fn icc_off_and_internal_networks() {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world();
    let Some(d) = bed_with_docker(&bed, options()) else {
        return;
    };
    d.network(
        "quiet",
        &["-o", "com.docker.network.bridge.enable_icc=false"],
    );
    d.network("inner", &["--internal", "--subnet", "10.91.2.0/24"]);
    let q1 = d.run("q1", &["--network", "quiet"]);
    let q2 = d.run("q2", &["--network", "quiet"]);
    let (e1, e2) = (d.ep(&q1, "quiet"), d.ep(&q2, "quiet"));
    let gw = bed.gateway(&d.ok(&["network", "inspect", "-f", "{{.Id}}", "quiet"]));
    let before = bed.drop_count("icc-disabled");
    blocked_both(&e1, &e2);
    assert!(
        bed.drop_count("icc-disabled") > before,
        "icc drops must be counted"
    );
    // Control: the gateway (the host) is still reachable.
    reach(&e1, &bed.host(gw));

    let i1 = d.run("i1", &["--network", "inner"]);
    let i2 = d.run("i2", &["--network", "inner"]);
    let (f1, f2) = (d.ep(&i1, "inner"), d.ep(&i2, "inner"));
    reach_both(&f1, &f2);
    let w = netd_tests::Ep::new("world", &world, "203.0.113.1".parse().unwrap());
    // No default route on an internal network (as Docker's bridge driver).
    let routes = d.ok(&["exec", "i1", "ip", "route"]);
    assert!(!routes.contains("default"), "internal: {routes}");
    // Even with a route planted by hand, nothing leaves the subnet.
    let inner_gw = bed.gateway(&d.ok(&["network", "inspect", "-f", "{{.Id}}", "inner"]));
    netd_tests::cmd::ip_ns(
        &i1.ns,
        &["route", "add", "default", "via", &inner_gw.to_string()],
    )
    .unwrap();
    let before = bed.drop_count("internal-network");
    blocked(&f1, &w);
    assert!(
        bed.drop_count("internal-network") > before,
        "internal drops must be counted"
    );
}
