//! The hostile-host fixture itself (tests/src/firewall.rs): on each variant,
//! traffic the kernel forwards or delivers to the host without netd — a
//! plain Linux bridge with two namespaces on it — is dropped, while the same
//! topology passes on the permissive host; and a rule added behind the bed's
//! back is caught. `NETD_TEST_FIREWALL` runs the SPEC section-4 suites on
//! these hosts; this file shows that those runs could fail, and that with
//! `--host-routing kernel` (the negative control) netd's forwarded traffic
//! is dropped there.

use netd_tests::cmd::ip_ns;
use netd_tests::traffic::{allow, deny, Flow};
use netd_tests::{Bed, Ep, Firewall};

/// The plain bridge's IPv6 prefix: the host is ::1, p1 ::2, p2 ::3.
const V6: &str = "fd00:99:1::";

/// Two namespaces on a plain bridge `brx` (10.99.1.1/24 and fd00:99:1::1/64)
/// in the bed's host netns, not netd's. Returns (p1, p2, the bridge's host
/// address), IPv4; the same at their IPv6 addresses are [`v6`].
fn plain_bridge(bed: &Bed) -> (Ep, Ep, Ep) {
    let host = bed.host_ns();
    let ip = |ns: &str, args: &[&str]| ip_ns(ns, args).unwrap_or_else(|e| panic!("{e:#}"));
    ip(host, &["link", "add", "brx", "type", "bridge"]);
    ip(host, &["addr", "add", "10.99.1.1/24", "dev", "brx"]);
    ip(
        host,
        &["addr", "add", &format!("{V6}1/64"), "dev", "brx", "nodad"],
    );
    ip(host, &["link", "set", "brx", "up"]);
    let mut eps = Vec::new();
    for (i, addr) in [(1, "10.99.1.2"), (2, "10.99.1.3")] {
        let ns = bed.new_netns(&format!("p{i}"));
        let (h, c) = (format!("pxh{i}"), format!("pxc{i}"));
        ip(
            host,
            &[
                "link", "add", &h, "type", "veth", "peer", "name", &c, "netns", &ns,
            ],
        );
        ip(host, &["link", "set", &h, "master", "brx", "up"]);
        ip(&ns, &["addr", "add", &format!("{addr}/24"), "dev", &c]);
        ip(
            &ns,
            &[
                "addr",
                "add",
                &format!("{V6}{}/64", i + 1),
                "dev",
                &c,
                "nodad",
            ],
        );
        ip(&ns, &["link", "set", &c, "up"]);
        ip(&ns, &["link", "set", "lo", "up"]);
        eps.push(Ep::new(&format!("p{i}"), &ns, addr.parse().unwrap()));
    }
    let gw = bed.host("10.99.1.1".parse().unwrap());
    (eps.remove(0), eps.remove(0), gw)
}

/// `ep` at its IPv6 address on the plain bridge (host ::1, p1 ::2, p2 ::3).
fn v6(ep: &Ep, n: u16) -> Ep {
    let ip = format!("{V6}{n}").parse().unwrap();
    Ep::v6(&format!("{}/v6", ep.name), &ep.ns, ip)
}

/// Both families: what the kernel bridges and delivers passes the
/// permissive host and is dropped by a hostile one, neighbour discovery
/// included in what still works (the host's own IPv6 connections need it).
fn kernel_paths(firewall: Firewall) {
    let bed = Bed::with_firewall(firewall, &[]);
    let (p1, p2, gw) = plain_bridge(&bed);
    let (p16, p26, gw6) = (v6(&p1, 2), v6(&p2, 3), v6(&gw, 1));
    let hostile = firewall.drops_input();
    let verdict = |from: &Ep, to: &Ep| -> Flow {
        if hostile {
            deny(from, to)
        } else {
            allow(from, to)
        }
    };
    bed.expect(&[
        // Bridged between two ports: br_netfilter sends it through FORWARD.
        verdict(&p1, &p2),
        verdict(&p2, &p1),
        // To a socket of the host: INPUT (its drop counter is the witness).
        bed.to_host(&p1, &gw),
        // The host's own connections, and their replies: always allowed.
        allow(&gw, &p1),
        // IPv6 the same way (bridge-nf-call-ip6tables, ip6tables/inet).
        verdict(&p16, &p26),
        verdict(&p26, &p16),
        bed.to_host(&p16, &gw6),
        // Needs neighbour discovery through the host's INPUT chain.
        allow(&gw6, &p16),
    ]);
    bed.assert_firewall_unchanged();
}

#[test]
fn the_permissive_host_forwards_without_netd() {
    kernel_paths(Firewall::Permissive);
}

#[test]
fn the_iptables_host_drops_what_the_kernel_forwards() {
    kernel_paths(Firewall::Iptables);
}

#[test]
fn the_nftables_host_drops_what_the_kernel_forwards() {
    kernel_paths(Firewall::Nftables);
}

#[test]
fn a_rule_added_behind_the_beds_back_is_caught() {
    for (firewall, add, del) in [
        (
            Firewall::Iptables,
            &["iptables-nft", "-I", "FORWARD", "-j", "ACCEPT"][..],
            &["iptables-nft", "-D", "FORWARD", "-j", "ACCEPT"][..],
        ),
        (
            Firewall::Iptables,
            &["ip6tables-nft", "-I", "FORWARD", "-j", "ACCEPT"][..],
            &["ip6tables-nft", "-D", "FORWARD", "-j", "ACCEPT"][..],
        ),
        (
            Firewall::Nftables,
            &["nft", "add", "chain", "inet", "filter", "netd_probe"][..],
            &["nft", "delete", "chain", "inet", "filter", "netd_probe"][..],
        ),
    ] {
        let bed = Bed::with_firewall(firewall, &[]);
        let net = format!("--net=/run/netns/{}", bed.host_ns());
        let run = |argv: &[&str]| {
            let mut all = vec![net.as_str()];
            all.extend_from_slice(argv);
            netd_tests::cmd::run_ok("nsenter", &all).unwrap_or_else(|e| panic!("{e:#}"));
        };
        bed.check_firewall()
            .unwrap_or_else(|e| panic!("fresh bed: {e}"));
        run(add);
        let err = bed
            .check_firewall()
            .expect_err("an added rule should be caught");
        assert!(err.contains("changed while netd ran"), "{err}");
        run(del);
        bed.check_firewall()
            .unwrap_or_else(|e| panic!("after removing the probe rule: {e}"));
    }
}

/// The negative control on both fixture variants: with `--host-routing
/// kernel` netd hands forwarded packets to the kernel, whose bridge and
/// FORWARD chain the hostile host drops; with the default `ebpf` the same
/// packets never meet them. (tests/tests/host_routing.rs has the full
/// negative control — world, published ports, counters — on its own
/// iptables host.)
fn host_routing_modes(firewall: Firewall) {
    for (mode, forwarded) in [("kernel", false), ("ebpf", true)] {
        let bed = Bed::with_firewall(firewall, &["--host-routing", mode]);
        let st = bed.json(&["status", "--format", "json"]);
        assert_eq!(st["host_routing"]["mode"], mode, "{st}");
        bed.network(
            "n",
            &[
                "--subnet",
                "10.99.2.0/24",
                "--ipv6",
                "--subnet",
                "fd00:99:2::/64",
            ],
        );
        let a = bed.container("a", &["--network", "n"]);
        let b = bed.container("b", &["--network", "n"]);
        let (a6, b6) = (bed.ep6(&a, "n"), bed.ep6(&b, "n"));
        let (a, b) = (bed.ep(&a, "n"), bed.ep(&b, "n"));
        let gw = bed.host(bed.gateway("n"));
        let verdict = |from: &Ep, to: &Ep| {
            if forwarded {
                allow(from, to)
            } else {
                deny(from, to)
            }
        };
        bed.expect(&[
            verdict(&a, &b),
            verdict(&b, &a),
            // IPv6 the same (neighbour discovery is answered at the veth
            // in both modes; the packets after it are what the kernel
            // would forward).
            verdict(&a6, &b6),
            verdict(&b6, &a6),
            // Control: host -> container is not forwarded, works in both.
            allow(&gw, &a),
        ]);
        bed.assert_firewall_unchanged();
    }
}

#[test]
fn kernel_host_routing_is_dropped_on_the_iptables_host() {
    host_routing_modes(Firewall::Iptables);
}

#[test]
fn kernel_host_routing_is_dropped_on_the_nftables_host() {
    host_routing_modes(Firewall::Nftables);
}
