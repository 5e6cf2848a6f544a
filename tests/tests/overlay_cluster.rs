//! Overlay networks' control plane (issue 17) on three hosts sharing one
//! etcd: networks every host sees, addresses no two hosts get, names that
//! resolve across hosts, and what host, etcd and agent failures do to the
//! cluster view. (Packets across hosts: tests/tests/overlay_datapath.rs.)
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use netd_tests::cluster::{dig, remote_names, Cluster, CONVERGE};
use netd_tests::{icmp, Bed};
use serde_json::Value;

/// Waits (bounded) until `network inspect NAME` on `bed` answers; returns it.
fn wait_network(bed: &Bed, name: &str) -> Value {
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let out = bed.netd(&["network", "inspect", name]);
        if out.success() {
            let v: Value = serde_json::from_str(&out.stdout).expect("inspect prints JSON");
            return v[0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "network {name} not on host within {CONVERGE:?}:\n{out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn network_gone(bed: &Bed, name: &str) -> bool {
    !bed.netd(&["network", "inspect", name]).success()
}

fn addr_of(bed: &Bed, ctr: &str, net: &str) -> Ipv4Addr {
    let v = bed.ctr_info(ctr);
    v["Networks"][net]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("{ctr} has no address on {net}: {v}"))
        .parse()
        .unwrap()
}

#[test]
fn overlay_without_a_cluster_store_is_refused() {
    let bed = Bed::new();
    let err = bed.fail(&["network", "create", "--driver", "overlay", "ov"]);
    assert!(err.contains("--cluster-store"), "{err}");
    assert!(network_gone(&bed, "ov"));
    let err = bed.fail(&["network", "create", "--driver", "vlan", "x"]);
    assert!(err.contains("unknown network driver"), "{err}");
    assert!(bed.json(&["status", "--format", "json"])["cluster"].is_null());
}

#[test]
fn networks_addresses_and_names_across_hosts() {
    let Some(c) = Cluster::new(3, &[]) else {
        return;
    };
    let (h1, h2, h3) = (c.host(1), c.host(2), c.host(3));
    let id = h1.ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "ov1",
        "--subnet",
        "10.0.10.0/24",
    ]);
    h2.ok(&["network", "create", "-d", "overlay", "ov2"]);
    // Every host has both, with one id, subnet and VNI.
    let ov1: Vec<Value> = c.hosts().map(|h| wait_network(h, "ov1")).collect();
    let ov2: Vec<Value> = c.hosts().map(|h| wait_network(h, "ov2")).collect();
    for (a, b) in [(&ov1, "10.0.10.0/24"), (&ov2, "10.0.0.0/24")] {
        for n in a.iter() {
            assert_eq!(n["Id"], a[0]["Id"]);
            assert_eq!(n["Driver"], "overlay");
            assert_eq!(n["Scope"], "global");
            assert_eq!(n["IPAM"]["Config"][0]["Subnet"], b, "{n}");
            assert_eq!(
                n["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
                a[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
            );
        }
    }
    assert!(ov1[0]["Id"].as_str().unwrap().starts_with(&id));
    assert_ne!(
        ov1[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        ov2[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
    );
    // Refused with what to do instead, on no host: IPv6 (not tunnelled),
    // an MTU the underlay cannot carry with VXLAN's 50 bytes.
    let err = h1.fail(&["network", "create", "-d", "overlay", "v6", "--ipv6"]);
    assert!(err.contains("IPv4 only") && err.contains("--ipv6"), "{err}");
    let err = h2.fail(&["network", "create", "-d", "overlay", "big", "--mtu", "1451"]);
    assert!(
        err.contains("underlay MTU is 1500") && err.contains("at most 1450"),
        "{err}"
    );
    for h in c.hosts() {
        assert!(network_gone(h, "v6") && network_gone(h, "big"));
    }
    // A local bridge network may not take an overlay network's subnet.
    let err = h3.fail(&["network", "create", "local", "--subnet", "10.0.10.0/25"]);
    assert!(err.contains("overlaps"), "{err}");
    // An overlay network that clashes with a host's own network is not
    // realised there, and that host's status says why.
    h3.ok(&["network", "create", "mine", "--subnet", "10.0.20.0/24"]);
    h1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "clash",
        "--subnet",
        "10.0.20.0/24",
    ]);
    wait_network(h2, "clash");
    let s3 = c.wait_for(3, "a conflict for clash", |s| {
        s["conflicts"].to_string().contains("clash")
    });
    assert!(
        s3["conflicts"]
            .to_string()
            .contains("overlaps network mine"),
        "{s3:#}"
    );
    assert!(network_gone(h3, "clash"));
    h1.ok(&["network", "rm", "clash"]);
    c.wait_for(3, "no conflict", |s| {
        s["conflicts"].as_array().is_some_and(Vec::is_empty)
    });

    // Two hosts allocate on ov1 at once: no address twice.
    fn names(p: &str) -> Vec<String> {
        (1..=4).map(|i| format!("{p}{i}")).collect()
    }
    std::thread::scope(|s| {
        for (h, p) in [(h1, "a"), (h2, "b")] {
            s.spawn(move || {
                for n in names(p) {
                    h.container(&n, &["--network", "ov1"]);
                }
            });
        }
    });
    let mut seen = BTreeSet::new();
    for (h, p) in [(h1, "a"), (h2, "b")] {
        for n in names(p) {
            let ip = addr_of(h, &n, "ov1");
            assert!(seen.insert(ip), "{ip} given twice ({n})");
            assert_eq!(
                ip.octets()[..3],
                [10, 0, 10],
                "{ip} is outside 10.0.10.0/24"
            );
            assert_ne!(ip, Ipv4Addr::new(10, 0, 10, 1), "the gateway was given");
        }
    }
    // An address another host holds cannot be asked for.
    let taken = addr_of(h1, "a1", "ov1").to_string();
    let ns = h3.new_netns("dup");
    let path = format!("/run/netns/{ns}");
    let err = h3.fail(&[
        "container",
        "add",
        "dup",
        "--netns",
        &path,
        "--network",
        "ov1",
        "--ip",
        &taken,
    ]);
    assert!(err.contains("already in use"), "{err}");
    let c1 = h3.container("c1", &["--network", "ov1", "--alias", "svc"]);
    let c2 = h3.container("c2", &["--network", "ov2"]);

    // Each host forwards to the others' endpoints, never to its own.
    let a = names("a");
    let b = names("b");
    let mut want1: Vec<&str> = b.iter().map(String::as_str).collect();
    want1.extend(["c1", "c2"]);
    c.wait_remotes(1, &want1);
    let mut want3: Vec<&str> = a.iter().chain(&b).map(String::as_str).collect();
    want3.sort();
    let s3 = c.wait_remotes(3, &want3);
    for e in s3["remote_endpoints"].as_array().unwrap() {
        let host = if e["container"].as_str().unwrap().starts_with('a') {
            1
        } else {
            2
        };
        assert_eq!(e["host_address"], format!("198.51.100.{host}"), "{e}");
    }
    let st = c.cluster_status(2);
    assert_eq!(st["reachable"], true);
    assert_eq!(st["hosts"].as_array().unwrap().len(), 3);
    let text = h2.ok(&["status"]);
    assert!(
        text.contains("cluster store") && text.contains("reachable"),
        "{text}"
    );
    assert!(text.contains("REMOTE CONTAINER"), "{text}");

    // Names: a container on ov1 resolves the others' on every host; ov2
    // does not see ov1's.
    let b2 = addr_of(h2, "b2", "ov1");
    assert_eq!(dig(&c1.ns, "b2"), ("NOERROR".into(), vec![b2]));
    let c1_ip = addr_of(h3, "c1", "ov1");
    let a_ns = format!("nt-{}-a1", h1.id());
    assert_eq!(dig(&a_ns, "svc"), ("NOERROR".into(), vec![c1_ip]));
    assert_eq!(dig(&a_ns, "c1"), ("NOERROR".into(), vec![c1_ip]));
    assert_eq!(dig(&c2.ns, "b2").0, "NXDOMAIN");

    // Removal is refused while any host has an endpoint, then seen by all.
    let err = h1.fail(&["network", "rm", "ov2"]);
    assert!(err.contains("c2"), "{err}");
    h3.ok(&["container", "rm", "c2"]);
    c.wait_remotes(1, &want1[..want1.len() - 1]);
    h1.ok(&["network", "rm", "ov2"]);
    for h in c.hosts() {
        let deadline = std::time::Instant::now() + CONVERGE;
        while !network_gone(h, "ov2") {
            assert!(std::time::Instant::now() < deadline, "ov2 still on a host");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    // Two hosts create networks at once: one name wins, subnets never
    // overlap.
    let results: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = [h1, h2]
            .into_iter()
            .map(|h| {
                s.spawn(move || {
                    h.netd(&["network", "create", "-d", "overlay", "race"])
                        .success()
                })
            })
            .collect();
        hs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    std::thread::scope(|s| {
        for (h, n) in [(h1, "ra"), (h2, "rb")] {
            s.spawn(move || h.ok(&["network", "create", "-d", "overlay", n]));
        }
    });
    let ra = wait_network(h3, "ra")["IPAM"]["Config"][0]["Subnet"].clone();
    let rb = wait_network(h3, "rb")["IPAM"]["Config"][0]["Subnet"].clone();
    assert_ne!(ra, rb);
}

#[test]
fn cut_off_host_etcd_restart_and_agent_kill() {
    let Some(c) = Cluster::new(3, &[]) else {
        return;
    };
    let (h1, h2, h3) = (c.host(1), c.host(2), c.host(3));
    h1.ok(&["network", "create", "-d", "overlay", "ov"]);
    for h in c.hosts() {
        wait_network(h, "ov");
    }
    let a = h1.container("a", &["--network", "ov"]);
    let b = h2.container("b", &["--network", "ov"]);
    let cc = h3.container("c", &["--network", "ov"]);
    c.wait_remotes(1, &["b", "c"]);
    c.wait_remotes(2, &["a", "c"]);
    c.wait_remotes(3, &["a", "b"]);
    let c_ip = addr_of(h3, "c", "ov");
    let b_ip = addr_of(h2, "b", "ov");
    let ping = |ns: &str, ip: Ipv4Addr, what: &str| {
        icmp(ns, ip).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    };
    ping(&a.ns, c_ip, "a (host 1) -> c (host 3)");
    ping(&cc.ns, b_ip, "c (host 3) -> b (host 2)");

    // Host 3 cut off: the others drop it when its lease ends; it keeps
    // what it knew and refuses changes it cannot make.
    c.set_underlay(3, false);
    for i in [1, 2] {
        c.wait_for(i, "host 3 gone", |s| {
            s["hosts"].as_array().map(Vec::len) == Some(2)
                && !remote_names(s).contains(&"c".to_string())
        });
    }
    let s3 = c.wait_for(3, "store unreachable", |s| s["reachable"] == false);
    assert_eq!(remote_names(&s3), vec!["a", "b"], "{s3:#}");
    assert_eq!(
        h3.map_entries("OVERLAY_REMOTES"),
        2,
        "host 3 keeps what it knew"
    );
    // Meanwhile the others go on: a container comes, one goes.
    let e = h2.container("e", &["--network", "ov"]);
    let e_ip = addr_of(h2, "e", "ov");
    c.wait_remotes(1, &["b", "e"]);
    let ns = h3.new_netns("late");
    let err = h3.fail(&[
        "container",
        "add",
        "late",
        "--netns",
        &format!("/run/netns/{ns}"),
        "--network",
        "ov",
    ]);
    assert!(err.contains("cluster store"), "{err}");
    // Back: it registers again with its endpoints, same addresses, and
    // catches up with what changed while it was away.
    c.set_underlay(3, true);
    c.wait_hosts(3);
    c.wait_remotes(3, &["a", "b", "e"]);
    c.wait_remotes(1, &["b", "c", "e"]);
    assert_eq!(addr_of(h3, "c", "ov"), c_ip);
    ping(&a.ns, c_ip, "a -> c after host 3 is back");
    ping(&cc.ns, e_ip, "c -> e (made while host 3 was away)");
    h2.ok(&["container", "rm", &e.name]);
    c.wait_remotes(3, &["a", "b"]);

    // etcd stops: every host keeps its view; it starts again: nothing lost.
    c.etcd.stop();
    for i in 1..=3 {
        let s = c.wait_for(i, "store unreachable", |s| s["reachable"] == false);
        assert_eq!(remote_names(&s).len(), 2, "{s:#}");
    }
    let err = h2.fail(&["network", "create", "-d", "overlay", "during"]);
    assert!(err.contains("cluster store"), "{err}");
    // Forwarding and names go on with what every host knows.
    ping(&a.ns, c_ip, "a -> c while etcd is down");
    ping(&b.ns, c_ip, "b -> c while etcd is down");
    assert_eq!(dig(&a.ns, "c"), ("NOERROR".into(), vec![c_ip]));
    // An agent restarted while etcd is away starts from the view it saved.
    h1.kill_agent();
    h1.start_agent();
    let s1 = c.cluster_status(1);
    assert_eq!(s1["reachable"], false, "{s1:#}");
    assert_eq!(remote_names(&s1), vec!["b", "c"], "{s1:#}");
    ping(
        &a.ns,
        c_ip,
        "a -> c after host 1's agent restarted without etcd",
    );
    assert_eq!(dig(&a.ns, "c"), ("NOERROR".into(), vec![c_ip]));
    c.etcd.start().expect("etcd restarts");
    c.wait_hosts(3);
    c.wait_remotes(1, &["b", "c"]);
    c.wait_remotes(2, &["a", "c"]);
    // Nothing lost: the network and every address claim are still there.
    for i in 1..=3 {
        let s = c.cluster_status(i);
        assert_eq!(s["overlay_networks"], 1, "host {i}: {s:#}");
        assert_eq!(s["conflicts"], serde_json::json!([]), "host {i}: {s:#}");
    }
    let ns = h2.new_netns("dup");
    let err = h2.fail(&[
        "container",
        "add",
        "dup",
        "--netns",
        &format!("/run/netns/{ns}"),
        "--network",
        "ov",
        "--ip",
        &addr_of(h1, "a", "ov").to_string(),
    ]);
    assert!(err.contains("already in use"), "{err}");
    let d = h2.container("d", &["--network", "ov"]);
    let d_ip = addr_of(h2, &d.name, "ov");
    for (h, ctr) in [(h1, "a"), (h2, "b"), (h3, "c")] {
        assert_ne!(addr_of(h, ctr, "ov"), d_ip, "{ctr} and d got one address");
    }
    c.wait_remotes(1, &["b", "c", "d"]);

    // Host 2's agent is killed: it leaves when its lease ends, and comes
    // back with its containers (same addresses) when it restarts.
    h2.kill_agent();
    c.wait_for(1, "host 2 gone after its lease", |s| {
        s["hosts"].as_array().map(Vec::len) == Some(2) && remote_names(s) == vec!["c"]
    });
    h2.start_agent();
    c.wait_remotes(1, &["b", "c", "d"]);
    assert_eq!(addr_of(h2, "b", "ov"), b_ip);
    let s1 = c.cluster_status(1);
    let b_remote = s1["remote_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["container"] == "b")
        .cloned()
        .unwrap();
    assert_eq!(b_remote["ip"], b_ip.to_string());
    ping(&a.ns, b_ip, "a -> b after host 2's agent restarted");
    ping(&b.ns, c_ip, "b -> c after host 2's agent restarted");
}

/// A host that stays away longer than `--cluster-reclaim-after` gives its
/// addresses back: another host may take them. When it returns, what it
/// can claim again it publishes; what was taken it reports; an overlay
/// network whose MTU its (now smaller) underlay cannot carry is not
/// realised there.
#[test]
fn a_dead_host_gives_its_addresses_back() {
    let Some(c) = Cluster::new(2, &["--cluster-reclaim-after", "2"]) else {
        return;
    };
    let (h1, h2) = (c.host(1), c.host(2));
    h1.ok(&["network", "create", "-d", "overlay", "ov"]);
    wait_network(h2, "ov");
    let a = h1.container("a", &["--network", "ov"]);
    h2.container("b", &["--network", "ov"]);
    h2.container("b2", &["--network", "ov"]);
    c.wait_remotes(1, &["b", "b2"]);
    let b_ip = addr_of(h2, "b", "ov");
    let b2_ip = addr_of(h2, "b2", "ov");

    h2.kill_agent();
    c.wait_for(1, "host 2 gone after its lease", |s| {
        s["hosts"].as_array().map(Vec::len) == Some(1) && remote_names(s).is_empty()
    });
    // Its claims outlive the lease, then go (bounded wait: lease 4 s plus
    // 2 s away plus a sweep).
    let ns = h1.new_netns("taker");
    let path = format!("/run/netns/{ns}");
    let taker = [
        "container",
        "add",
        "taker",
        "--netns",
        &path,
        "--network",
        "ov",
        "--ip",
    ];
    let b_ip_s = b_ip.to_string();
    let mut args = taker.to_vec();
    args.push(&b_ip_s);
    netd_tests::wait::wait_until("host 2's address given back", CONVERGE, || {
        h1.netd(&args).success()
    });
    assert_eq!(addr_of(h1, "taker", "ov"), b_ip);

    // Meanwhile host 2's underlay shrinks to 1400, and host 1 creates a
    // network with an MTU only its own underlay carries.
    netd_tests::cmd::ip_ns(h2.host_ns(), &["link", "set", "ul0", "mtu", "1400"]).unwrap();
    h1.ok(&[
        "network", "create", "-d", "overlay", "wide", "--mtu", "1450",
    ]);

    // Host 2 returns: b2's address is free and claimed again; b's is not.
    // It does not realise `wide` (VXLAN over its underlay carries 1350).
    h2.start_agent();
    let s2 = c.wait_for(2, "a conflict for wide", |s| {
        s["conflicts"].to_string().contains("wide")
    });
    assert!(
        s2["conflicts"].to_string().contains("at most 1350"),
        "{s2:#}"
    );
    assert!(network_gone(h2, "wide"));
    c.wait_remotes(1, &["b2"]);
    let s2 = c.wait_for(2, "a conflict for b", |s| {
        s["conflicts"].to_string().contains("container b:")
    });
    assert!(s2["conflicts"].to_string().contains(&b_ip_s), "{s2:#}");
    assert_eq!(addr_of(h2, "b2", "ov"), b2_ip);
    icmp(&a.ns, b2_ip).expect("a -> b2 after host 2 is back");
    icmp(&a.ns, b_ip).expect("a -> taker (b's old address, now on host 1)");
}
