//! Concurrent API calls: many clients at once get consistent answers.
use std::collections::HashSet;

use netd_tests::bed::Bed;

#[test]
fn concurrent_adds_and_publishes_stay_consistent() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.94.1.0/24"]);
    let namespaces: Vec<String> = (0..16).map(|i| bed.new_netns(&format!("c{i}"))).collect();
    // 16 clients at once; every second one asks for the same host port.
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let bed = &bed;
                s.spawn(move || {
                    let path = format!("/run/netns/{ns}");
                    let name = format!("c{i}");
                    let publish = if i % 2 == 0 {
                        "18080:80".to_string()
                    } else {
                        format!("{}:80", 19000 + i)
                    };
                    bed.netd(&[
                        "container",
                        "add",
                        &name,
                        "--netns",
                        &path,
                        "--network",
                        "net1",
                        "-p",
                        &publish,
                    ])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = outs.iter().filter(|o| o.success()).count();
    // All odd ones succeed; exactly one of the even ones gets port 18080.
    assert_eq!(ok, 8 + 1, "{outs:#?}");
    for o in outs.iter().filter(|o| !o.success()) {
        assert!(o.stderr.contains("already published"), "{o}");
    }
    let list = bed.json(&["container", "ls", "--format", "json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 9);
    let addrs: HashSet<String> = list
        .iter()
        .map(|c| {
            c["Networks"]["net1"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(addrs.len(), 9, "addresses must be distinct: {addrs:?}");
    // The refused ones left nothing behind: one veth per container.
    let veths = bed
        .host_links()
        .iter()
        .filter(|l| l.starts_with("nd"))
        .count();
    assert_eq!(veths, 9, "{:?}", bed.host_links());
}

/// (subnet, bridge) of each network, from `network inspect`.
fn subnets_and_bridges(bed: &Bed, names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            let v = bed.net_info(n);
            let field = |x: &serde_json::Value| {
                x.as_str()
                    .unwrap_or_else(|| panic!("network {n}: {v}"))
                    .to_string()
            };
            (
                field(&v["IPAM"]["Config"][0]["Subnet"]),
                field(&v["Options"]["com.docker.network.bridge.name"]),
            )
        })
        .collect()
}

/// 8 clients at once create networks, then add 40 containers publishing
/// ports (some racing for one name, one address, one host port), while a
/// ninth keeps reading; then 8 clients remove everything at once. No
/// subnet, bridge, address, name or host port is handed out twice; every
/// container works (real packets on a sample); nothing is left behind.
/// Then an upgrade: the spare veth an earlier netd's pool left after a
/// crash is deleted by the next agent's start-up reconcile.
#[test]
fn eight_clients_at_once_get_unique_subnets_addresses_and_ports() {
    use netd_tests::{
        ports::{ask_from, sa, PortServer, P},
        traffic::{allow, dropped},
    };
    let bed = Bed::new();
    let clients = 8;
    // Networks: 8 at once, the pools pick the subnets; two more race for
    // one explicit subnet.
    let names: Vec<String> = (0..clients).map(|i| format!("n{i}")).collect();
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let bed = &bed;
                s.spawn(move || bed.netd(&["network", "create", n]))
            })
            .chain((0..2).map(|i| {
                let bed = &bed;
                s.spawn(move || {
                    bed.netd(&[
                        "network",
                        "create",
                        &format!("same{i}"),
                        "--subnet",
                        "10.95.0.0/24",
                    ])
                })
            }))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs[..clients] {
        assert!(o.success(), "{o}");
    }
    let raced: Vec<_> = outs[clients..].iter().filter(|o| o.success()).collect();
    assert_eq!(
        raced.len(),
        1,
        "exactly one of two creates of 10.95.0.0/24 wins: {outs:#?}"
    );
    let loser = outs[clients..].iter().find(|o| !o.success()).unwrap();
    assert!(loser.stderr.contains("overlaps"), "{loser}");
    let nets = subnets_and_bridges(&bed, &names);
    let subnets: HashSet<_> = nets.iter().map(|(s, _)| s.clone()).collect();
    let bridges: HashSet<_> = nets.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(subnets.len(), clients, "subnets must be distinct: {nets:?}");
    assert_eq!(bridges.len(), clients, "bridges must be distinct: {nets:?}");
    assert!(!subnets.contains("10.95.0.0/24"), "{nets:?}");

    // Containers: 8 clients, 5 each, on networks n0..n3, each publishing
    // container port 80 on a host port netd picks, and the first of each
    // client on 28080 (only one may get it). Two clients also race for one
    // name on the default network.
    let per = 5;
    let namespaces: Vec<String> = (0..clients * per + 2)
        .map(|i| bed.new_netns(&format!("k{i}")))
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (outs, reads) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for args in [&["network", "ls"][..], &["status"], &["container", "ls"]] {
                    let o = bed.netd(args);
                    assert!(o.success(), "a read failed during the adds: {o}");
                }
                n += 1;
            }
            n
        });
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (bed, namespaces) = (&bed, &namespaces);
                s.spawn(move || {
                    let mut outs = Vec::new();
                    for j in 0..per {
                        let i = c * per + j;
                        let path = format!("/run/netns/{}", namespaces[i]);
                        let net = format!("n{}", i % 4);
                        let publish = if j == 0 { "28080:80" } else { "80" };
                        outs.push((
                            i,
                            bed.netd(&[
                                "container",
                                "add",
                                &format!("k{i}"),
                                "--netns",
                                &path,
                                "--network",
                                &net,
                                "-p",
                                publish,
                            ]),
                        ));
                    }
                    if c < 2 {
                        let path = format!("/run/netns/{}", namespaces[clients * per + c]);
                        let o = bed.netd(&["container", "add", "dup", "--netns", &path]);
                        outs.push((usize::MAX, o));
                    }
                    outs
                })
            })
            .collect();
        let outs: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (outs, reader.join().unwrap())
    });
    assert!(reads > 0, "the reader never got through");
    let won_28080: Vec<_> = outs
        .iter()
        .filter(|(i, o)| *i != usize::MAX && i % per == 0 && o.success())
        .collect();
    assert_eq!(won_28080.len(), 1, "exactly one gets 28080: {outs:#?}");
    let dups: Vec<_> = outs.iter().filter(|(i, _)| *i == usize::MAX).collect();
    assert_eq!(
        dups.iter().filter(|(_, o)| o.success()).count(),
        1,
        "{dups:#?}"
    );
    for (i, o) in &outs {
        if *i == usize::MAX {
            assert!(o.success() || o.stderr.contains("already in use"), "{o}");
        } else if i % per == 0 && !o.success() {
            assert!(o.stderr.contains("already published"), "{o}");
        } else {
            assert!(o.success(), "{o}");
        }
    }
    let added: Vec<usize> = outs
        .iter()
        .filter(|(i, o)| *i != usize::MAX && o.success())
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(added.len(), clients * (per - 1) + 1);
    let list = bed.json(&["container", "ls", "--format", "json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), added.len() + 1, "and dup");
    let mut addrs = HashSet::new();
    let mut host_ports = HashSet::new();
    for c in list {
        for (_, ep) in c["Networks"].as_object().unwrap() {
            let a = ep["IPAddress"].as_str().unwrap().to_string();
            assert!(addrs.insert(a.clone()), "address {a} handed out twice");
        }
        for p in c["Ports"].as_array().unwrap() {
            let hp = p["HostPort"].as_u64().unwrap();
            assert!(host_ports.insert(hp), "host port {hp} handed out twice");
        }
    }
    assert_eq!(host_ports.len(), added.len());
    assert!(host_ports.contains(&28080));
    let veths = bed
        .host_links()
        .iter()
        .filter(|l| l.starts_with("nd"))
        .count();
    assert_eq!(veths, added.len() + 1, "{:?}", bed.host_links());
    assert_eq!(bed.map_entries("ENDPOINTS"), added.len() + 1);

    // Real packets on a sample: same network both ways, another network
    // dropped by the isolation, a picked host port answered by its
    // container from another network (at the client's gateway).
    let ctr = |i: usize| netd_tests::bed::Ctr {
        name: format!("k{i}"),
        id: String::new(),
        ns: namespaces[i].clone(),
        netns_path: format!("/run/netns/{}", namespaces[i]),
    };
    let on = |net: usize| {
        added
            .iter()
            .copied()
            .filter(|i| i % 4 == net)
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (ctr(on(1)[0]), ctr(on(1)[1]), ctr(on(2)[0]));
    let (ea, eb, ec) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"), bed.ep(&c, "n2"));
    bed.expect(&[
        allow(&ea, &eb),
        allow(&eb, &ea),
        dropped(&ea, &ec, "network-isolation"),
    ]);
    let info = bed.ctr_info(&c.name);
    let port = info["Ports"][0]["HostPort"].as_u64().unwrap() as u16;
    let server = PortServer::start(&c.ns, &[80], &[]);
    let gw = bed.gateway("n1");
    let answer = ask_from(&a.ns, P::Tcp, sa(gw, port))
        .unwrap_or_else(|e| panic!("{}:{port} from {}: {e:#}", gw, a.name));
    assert_eq!(answer.port, 80);
    assert_eq!(answer.seen.ip(), &ea.ip, "the container sees the client");
    drop(server);

    // Everything removed by 8 clients at once, then the networks.
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (bed, added) = (&bed, &added);
                s.spawn(move || {
                    let mut names: Vec<String> = added
                        .iter()
                        .skip(c)
                        .step_by(clients)
                        .map(|i| format!("k{i}"))
                        .collect();
                    if c == 0 {
                        names.push("dup".into());
                    }
                    names
                        .iter()
                        .map(|n| bed.netd(&["container", "rm", n]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for o in &outs {
        assert!(o.success(), "{o}");
    }
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let bed = &bed;
                s.spawn(move || bed.netd(&["network", "rm", n]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert!(o.success(), "{o}");
    }
    assert_eq!(
        bed.json(&["network", "ls", "--format", "json"])
            .as_array()
            .unwrap()
            .len(),
        2,
        "the default network and the winner of 10.95.0.0/24 are left"
    );
    assert!(
        !bed.host_links().iter().any(|l| l.starts_with("nd")),
        "{:?}",
        bed.host_links()
    );
    assert!(bed.pinned_links().iter().all(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        !name.ends_with("_from_container") && !name.ends_with("_to_container")
    }));
    for map in ["ENDPOINTS", "ENDPOINT_BY_IP", "PUBLISHED"] {
        assert_eq!(bed.map_entries(map), 0, "{map} entries left behind");
    }

    // An earlier netd kept spare veths (`--veth-pool`): host end `ns…`
    // marked `netd:pool`, peer `np…`. One its crash left behind is an
    // orphan to this netd, deleted at start.
    bed.kill_agent();
    let (spare, peer) = ("ns0123456789a", "np0123456789a");
    netd_tests::cmd::ip_ns(
        bed.host_ns(),
        &["link", "add", spare, "type", "veth", "peer", "name", peer],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    netd_tests::cmd::ip_ns(bed.host_ns(), &["link", "set", spare, "alias", "netd:pool"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    bed.start_agent();
    let links = bed.host_links();
    assert!(
        !links.iter().any(|l| l == spare || l == peer),
        "the start deletes an earlier netd's spare: {links:?}"
    );
    let repairs = bed.json(&["status", "--format", "json"])["last_reconcile"]["repairs"].clone();
    assert!(
        repairs.to_string().contains(spare),
        "the start-up reconcile names it: {repairs}"
    );
}
