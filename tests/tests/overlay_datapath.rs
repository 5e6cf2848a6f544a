//! Packets across hosts on overlay networks (issue 17): three hosts with
//! their own agents sharing one etcd, containers on each. The reachability
//! matrix across hosts by address and by name (same overlay network,
//! another overlay network, icc off, an internal overlay network, overlay
//! vs a local bridge network, a container on both), with the sender's drop
//! counters as witnesses; egress to the world by the local host's
//! masquerade and published ports on the local host; ARP answered on the
//! sender's host; `netd explain` to a remote container; forwarding without
//! a lost packet while an agent is killed and restarted; what container and
//! network removal leave in the maps. (The receiver's own checks, which a
//! netd sender never puts to the test, are in netd/tests/overlay_netns.rs.)
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netd_tests::cluster::{dig, Cluster, CONVERGE};
use netd_tests::cmd::ip_ns;
use netd_tests::ports::{ask_from, sa, PortServer, P};
use netd_tests::traffic::{allow, dropped, icmp, no_icmp, tcp, udp, Ep};
use netd_tests::wait::{wait_for, wait_until};
use netd_tests::world::{UPLINK, UPLINK_LIMIT, WORLD};
use netd_tests::{Bed, Ctr};

/// Waits (bounded) until `network inspect NAME` answers on `bed`.
fn wait_network(bed: &Bed, name: &str) {
    wait_until(
        &format!("network {name} on host {}", bed.id()),
        CONVERGE,
        || bed.netd(&["network", "inspect", name]).success(),
    );
}

/// Waits (bounded) until the pinned map `map` of `bed` has `n` entries.
fn wait_entries(bed: &Bed, map: &str, n: usize) {
    wait_for(
        &format!("{n} entries in {map} of host {}", bed.id()),
        CONVERGE,
        || match bed.map_entries(map) {
            have if have == n => Ok(()),
            have => Err(format!("{have} entries")),
        },
    );
}

/// `name` as `from` resolves it (exactly one address), as an endpoint in
/// netns `to_ns` (where the probes' server runs).
fn by_name(from: &Ctr, name: &str, to_ns: &str) -> Ep {
    let (status, addrs) = dig(&from.ns, name);
    assert!(
        status == "NOERROR" && addrs.len() == 1,
        "{} resolving {name}: {status} {addrs:?}",
        from.name
    );
    Ep::new(&format!("{name} (by name)"), to_ns, addrs[0])
}

#[test]
fn reachability_across_hosts() {
    let Some(c) = Cluster::new(3, &[]) else {
        return;
    };
    let (h1, h2, h3) = (c.host(1), c.host(2), c.host(3));
    // Host 1 also has a world behind an uplink (its default route).
    let world = h1.make_world();
    h1.wait_uplink(UPLINK, UPLINK_LIMIT);
    for (name, extra) in [
        ("ov1", None),
        ("ov2", None),
        ("ovq", Some("--icc=false")),
        ("ovi", Some("--internal")),
    ] {
        let mut args = vec!["network", "create", "-d", "overlay", name];
        args.extend(extra);
        h1.ok(&args);
    }
    h1.network("lb", &[]);
    for h in c.hosts() {
        for n in ["ov1", "ov2", "ovq", "ovi"] {
            wait_network(h, n);
        }
    }
    assert!(
        h1.host_links().iter().any(|l| l == "netd-vxlan"),
        "the VXLAN device: {:?}",
        h1.host_links()
    );
    let a1 = h1.container("a1", &["--network", "ov1", "-p", "8080:80"]);
    let b1 = h2.container("b1", &["--network", "ov1"]);
    let c1 = h3.container("c1", &["--network", "ov1"]);
    let a2 = h1.container("a2", &["--network", "ov2"]);
    let b2 = h2.container("b2", &["--network", "ov2"]);
    let q1 = h1.container("q1", &["--network", "ovq"]);
    let q2 = h2.container("q2", &["--network", "ovq"]);
    let i1 = h1.container("i1", &["--network", "ovi"]);
    let i2 = h2.container("i2", &["--network", "ovi"]);
    // m: on the overlay and on host 1's local network; l: only local.
    let m = h1.container("m", &["--network", "ov1"]);
    h1.ok(&["network", "connect", "lb", "m"]);
    let l = h1.container("l", &["--network", "lb"]);
    c.wait_remotes(1, &["b1", "b2", "c1", "i2", "q2"]);
    c.wait_remotes(2, &["a1", "a2", "c1", "i1", "m", "q1"]);
    c.wait_remotes(3, &["a1", "a2", "b1", "b2", "i1", "i2", "m", "q1", "q2"]);

    // The overlay's MTU leaves room for VXLAN on the 1500-byte underlay.
    let link = ip_ns(&a1.ns, &["link", "show", "eth0"]).unwrap();
    assert!(link.contains("mtu 1450"), "{link}");

    let (a1e, b1e, c1e) = (h1.ep(&a1, "ov1"), h2.ep(&b1, "ov1"), h3.ep(&c1, "ov1"));
    let (a2e, b2e) = (h1.ep(&a2, "ov2"), h2.ep(&b2, "ov2"));
    let (q1e, q2e) = (h1.ep(&q1, "ovq"), h2.ep(&q2, "ovq"));
    let (i1e, i2e) = (h1.ep(&i1, "ovi"), h2.ep(&i2, "ovi"));
    let (m_ov, m_lb, le) = (h1.ep(&m, "ov1"), h1.ep(&m, "lb"), h1.ep(&l, "lb"));
    let w = Ep::new("world", &world, WORLD);
    // Each row is decided (and its drop counted) on the sender's host;
    // allowed rows check the receiver sees the sender's own address.
    h1.expect(&[
        allow(&a1e, &b1e),
        allow(&a1e, &c1e),
        allow(&a2e, &b2e),
        allow(&m_ov, &b1e),
        allow(&i1e, &i2e),
        dropped(&a1e, &b2e, "network-isolation"),
        dropped(&a2e, &b1e, "network-isolation"),
        dropped(&q1e, &q2e, "icc-disabled"),
        dropped(&le, &b1e, "network-isolation"),
        dropped(&i1e, &w, "internal-network"),
        dropped(&i1e, &b1e, "internal-network"),
        allow(&le, &m_lb),
    ]);
    h2.expect(&[
        allow(&b1e, &a1e),
        allow(&b1e, &m_ov),
        allow(&b1e, &c1e),
        allow(&i2e, &i1e),
        dropped(&b2e, &a1e, "network-isolation"),
        dropped(&q2e, &q1e, "icc-disabled"),
    ]);
    // A local network's address is no overlay address: host 2 routes it as
    // any address outside its networks (these hosts have no default route:
    // the stack answers "network unreachable"), nothing tunnels it.
    no_icmp(&b1.ns, m_lb.ip4()).expect("b1 -> m's local address");
    h3.expect(&[allow(&c1e, &a1e), dropped(&c1e, &b2e, "network-isolation")]);

    // By name: each host's containers resolve the others of their overlay
    // network (m by its overlay address only), and the name leads where
    // the address does; other networks' names do not resolve.
    let b1n = by_name(&a1, "b1", &b1.ns);
    let c1n = by_name(&b1, "c1", &c1.ns);
    let m_n = by_name(&c1, "m", &m.ns);
    let i1n = by_name(&i2, "i1", &i1.ns);
    assert_eq!(
        [b1n.ip, c1n.ip, m_n.ip, i1n.ip],
        [b1e.ip, c1e.ip, m_ov.ip, i1e.ip]
    );
    h1.expect(&[allow(&a1e, &b1n)]);
    h2.expect(&[allow(&b1e, &c1n), allow(&i2e, &i1n)]);
    h3.expect(&[allow(&c1e, &m_n)]);
    // (A name netd knows on no network of the asker's goes upstream, which
    // these hosts do not have: SERVFAIL rather than NXDOMAIN.)
    for (from, name) in [(&a1, "b2"), (&b1, "l"), (&l, "b1"), (&i2, "b1")] {
        let (status, addrs) = dig(&from.ns, name);
        assert!(
            addrs.is_empty() && ["NXDOMAIN", "SERVFAIL"].contains(&status.as_str()),
            "{} resolves {name}: {status} {addrs:?}",
            from.name
        );
    }

    // The world: reached through host 1's own masquerade (the world sees
    // the uplink's address); a1's published port answers on host 1.
    icmp(&a1.ns, WORLD).expect("a1 -> world");
    assert_eq!(
        tcp(&a1.ns, &w).expect("a1 -> world (TCP)"),
        IpAddr::from(UPLINK)
    );
    assert_eq!(
        udp(&a1.ns, &w).expect("a1 -> world (UDP)"),
        IpAddr::from(UPLINK)
    );
    let srv = PortServer::start(&a1.ns, &[80], &[]);
    let ans = ask_from(&world, P::Tcp, sa(UPLINK, 8080)).expect("world -> host 1:8080");
    assert_eq!((*ans.seen.ip(), ans.port), (WORLD, 80), "{ans:?}");
    assert_eq!(srv.count(), 1);

    // ARP for a remote container is answered on the sender's host with
    // that container's own MAC.
    let b1_mac = h2.ctr_view("b1").networks["ov1"].mac_address.clone();
    let neigh = ip_ns(&a1.ns, &["neigh", "show", &b1e.ip.to_string()]).unwrap();
    assert!(
        neigh.contains(&b1_mac),
        "a1's neighbour {}: {neigh}",
        b1e.ip
    );
    let s = h1.json(&["status", "--format", "json"]);
    let shortcuts = &s["host_routing"]["shortcuts"];
    for k in ["overlay-encap", "overlay-decap", "overlay-arp-reply"] {
        assert!(shortcuts[k].as_u64().unwrap_or(0) > 0, "{k}: {shortcuts}");
    }

    // explain: into the tunnel for a remote container, by name or address;
    // dropped at the sender for another overlay network's; a remote
    // container as the sender is explained on its own host.
    for dst in ["b1".to_string(), b1e.ip.to_string()] {
        let ex = h1.json(&["explain", "a1", &dst, "--format", "json"]);
        assert_eq!(ex["verdict"], "delivered", "{ex:#}");
        assert_eq!(ex["delivered"]["kind"], "remote", "{ex:#}");
        assert_eq!(ex["delivered"]["container"], "b1", "{ex:#}");
        assert_eq!(ex["to"]["host_address"], "198.51.100.2", "{ex:#}");
    }
    let ex = h1.json(&["explain", "a1", &b2e.ip.to_string(), "--format", "json"]);
    assert_eq!(
        (&ex["verdict"], &ex["reason"]),
        (&"dropped".into(), &"network-isolation".into()),
        "{ex:#}"
    );
    let ex = h1.json(&["explain", "host", "b1", "--format", "json"]);
    assert_eq!(ex["delivered"]["kind"], "nowhere", "{ex:#}");
    assert!(
        ex["delivered"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("only containers of network ov1")),
        "{ex:#}"
    );
    let err = h1.fail(&["explain", "b1", "a1"]);
    assert!(err.contains("run netd explain there"), "{err}");
}

/// A flood ping (every 20 ms) running until [`Pinger::finish`].
struct Pinger(Option<Child>);

impl Pinger {
    fn start(ns: &str, dst: IpAddr) -> Pinger {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["ping", "-n", "-q", "-i", "0.02", "-W", "1", "-w", "120"])
            .arg(dst.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ping");
        Pinger(Some(child))
    }

    /// Stops it (SIGINT: it prints its summary); (sent, received).
    fn finish(mut self) -> (u64, u64) {
        let child = self.0.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let out = child.wait_with_output().expect("ping output");
        let text = String::from_utf8_lossy(&out.stdout);
        // "N packets transmitted, M received, ..."
        let line = text.lines().find(|l| l.contains("transmitted"));
        let count = |what: &str| -> u64 {
            line.into_iter()
                .flat_map(|l| l.split(','))
                .find(|p| p.contains(what))
                .and_then(|p| p.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no `{what}` in ping's summary: {text}"))
        };
        (count("transmitted"), count("received"))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn forwarding_survives_an_agent_kill_and_removal_cleans_up() {
    // A lease longer than the agent's restart: the other host must not
    // drop host 2 meanwhile (that a dead host goes: overlay_cluster).
    let Some(c) = Cluster::with_lease(2, 30, &[]) else {
        return;
    };
    let (h1, h2) = (c.host(1), c.host(2));
    h1.ok(&["network", "create", "-d", "overlay", "ov"]);
    wait_network(h2, "ov");
    let a = h1.container("a", &["--network", "ov"]);
    let b = h2.container("b", &["--network", "ov"]);
    c.wait_remotes(1, &["b"]);
    c.wait_remotes(2, &["a"]);
    let (ae, be) = (h1.ep(&a, "ov"), h2.ep(&b, "ov"));
    h1.expect(&[allow(&ae, &be)]);
    wait_entries(h1, "OVERLAY_REMOTES", 1);
    wait_entries(h1, "OVERLAY_VNIS", 1);

    // Host 2's agent is SIGKILLed and restarted: its pinned programs and
    // maps forward every packet both ways meanwhile (flood pings through
    // the whole window), and new connections while it is dead.
    let pings = [Pinger::start(&a.ns, be.ip), Pinger::start(&b.ns, ae.ip)];
    std::thread::sleep(Duration::from_millis(300));
    h2.kill_agent();
    icmp(&a.ns, be.ip4()).expect("a -> b with host 2's agent dead");
    assert_eq!(tcp(&b.ns, &ae).expect("b -> a"), be.ip);
    h2.start_agent();
    c.wait_remotes(1, &["b"]);
    c.wait_remotes(2, &["a"]);
    std::thread::sleep(Duration::from_millis(300));
    for (p, what) in pings.into_iter().zip(["a -> b", "b -> a"]) {
        let (sent, received) = p.finish();
        // The last request may still be on its way when ping stops.
        assert!(
            sent > 20 && received + 1 >= sent,
            "{what} across host 2's agent restart: {received} of {sent} answered"
        );
    }
    h1.expect(&[allow(&ae, &be)]);
    h2.expect(&[allow(&be, &ae)]);

    // b goes: host 1 forgets it (and no longer reaches its address).
    h2.ok(&["container", "rm", "b"]);
    c.wait_remotes(1, &[]);
    wait_entries(h1, "OVERLAY_REMOTES", 0);
    no_icmp(&a.ns, be.ip4()).expect("a -> b's old address");
    // The network goes: no VNI, no remote left on either host.
    h1.ok(&["container", "rm", "a"]);
    h1.ok(&["network", "rm", "ov"]);
    for h in [h1, h2] {
        wait_entries(h, "OVERLAY_VNIS", 0);
        wait_entries(h, "OVERLAY_REMOTES", 0);
    }
}
