//! netd as dockerd's network driver (issue 11): a real dockerd 20.10 in the
//! bed's host netns drives netd with `docker network create -d netd`,
//! `docker run --network`, `-p`, `docker network connect/disconnect` and
//! `docker rm`; packets between the containers' netns show who gets through.
//! Skips (saying so) where docker.io is not installed.

use netd_tests::docker::{DCtr, Dockerd, Options, IMAGE};
use netd_tests::http::post_unix;
use netd_tests::ports::{ask_from, sa, unanswered_from, Errs, PortServer, P};
use netd_tests::traffic::{allow, dropped};
use netd_tests::world::{at4, at6, world_reaches, UPLINK, WORLD};
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
    // The agent asks dockerd for container names (config key docker-host).
    let bed = Bed::with_config("", &[]);
    let key = format!(
        "docker-host = {:?}\n",
        netd_tests::docker::api_socket(&bed).display().to_string()
    );
    std::fs::write(bed.config_path(), key).unwrap();
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
    assert!(ea.ip4().octets()[..3] == [10, 91, 1], "a got {}", ea.ip);
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
    // The endpoints are netd containers, named after Docker's containers.
    let names = |bed: &Bed| {
        let ls = bed.json(&["container", "ls", "--format", "json"]);
        let mut v: Vec<String> = ls
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                assert_eq!(e["Owner"], "docker", "{e}");
                e["Name"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        v.sort();
        v
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while names(&bed) != ["ca", "cb", "cc"] && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        names(&bed),
        ["ca", "cb", "cc"],
        "one netd container per endpoint"
    );
    let ls = bed.json(&["container", "ls", "--format", "json"]);
    let eps = ls.as_array().expect("container ls is an array");
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

#[test]
fn connect_and_disconnect_with_traffic_after_each() {
    let bed = Bed::without_agent(&[]);
    let Some(d) = bed_with_docker(&bed, options()) else {
        return;
    };
    d.network("left", &["--subnet", "10.91.5.0/24"]);
    d.network("right", &["--subnet", "10.91.6.0/24"]);
    let a = d.run("ca", &["--network", "left"]);
    let b = d.run("cb", &["--network", "right"]);
    let (a_left, b_right) = (d.ep(&a, "left"), d.ep(&b, "right"));
    blocked(&a_left, &b_right);

    d.ok(&["network", "connect", "right", "ca"]);
    let a_right = d.ep(&a, "right");
    assert!(a_right.ip4().octets()[..3] == [10, 91, 6], "{a_right}");
    reach_both(&a_right, &b_right);
    // The first network still works, and still only within itself.
    let c = d.run("cc", &["--network", "left"]);
    reach_both(&a_left, &d.ep(&c, "left"));
    let ls = bed.json(&["container", "ls", "--format", "json"]);
    assert_eq!(ls.as_array().map(Vec::len), Some(4), "{ls}");

    d.ok(&["network", "disconnect", "right", "ca"]);
    let links = d.ok(&["exec", "ca", "ip", "-o", "link"]);
    assert_eq!(
        links.lines().count(),
        2,
        "lo and one interface left: {links}"
    );
    let before = bed.drop_count("network-isolation");
    blocked_both(&a_left, &b_right);
    assert!(bed.drop_count("network-isolation") > before);
    reach_both(&a_left, &d.ep(&c, "left"));
    let ls = bed.json(&["container", "ls", "--format", "json"]);
    assert_eq!(ls.as_array().map(Vec::len), Some(3), "{ls}");
}

/// `docker network create --ipv6 -d netd`: Docker's IPAM gives the IPv6
/// subnet and addresses, netd takes them (CreateNetwork IPv6Data,
/// CreateEndpoint AddressIPv6) and answers Join with GatewayIPv6; the
/// containers reach each other over IPv6 with their own addresses, another
/// netd network is dropped by netd over IPv6 too, and removal leaves no
/// IPv6 entry.
#[test]
fn ipv6_networks_from_docker() {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world6();
    let Some(d) = bed_with_docker(&bed, options()) else {
        return;
    };
    let a = d.network(
        "v6a",
        &[
            "--ipv6",
            "--subnet",
            "10.91.20.0/24",
            "--subnet",
            "fd00:91:20::/64",
        ],
    );
    d.network(
        "v6b",
        &[
            "--ipv6",
            "--subnet",
            "10.91.21.0/24",
            "--subnet",
            "fd00:91:21::/64",
        ],
    );
    let v = bed.net_info(&a);
    assert_eq!(v["EnableIPv6"], true, "{v}");
    assert_eq!(v["IPAM"]["Config"][1]["Subnet"], "fd00:91:20::/64", "{v}");
    assert_eq!(v["IPAM"]["Config"][1]["Gateway"], "fd00:91:20::1", "{v}");
    let a1 = d.run("a1", &["--network", "v6a"]);
    let a2 = d.run("a2", &["--network", "v6a"]);
    let b1 = d.run("b1", &["--network", "v6b"]);
    let (e1, e2, f1) = (d.ep6(&a1, "v6a"), d.ep6(&a2, "v6a"), d.ep6(&b1, "v6b"));
    let net6: ipnet::Ipv6Net = "fd00:91:20::/64".parse().unwrap();
    assert!(net6.contains(&d.ip6(&a1, "v6a")), "a1 got {e1}");
    // netd holds the address Docker's IPAM chose (its container is named
    // by the endpoint id without --docker-host).
    let mine = d.endpoint_name(&a1, "v6a");
    let info = bed.ctr_info(&mine);
    let ep = info["Networks"]
        .as_object()
        .and_then(|m| m.values().next())
        .cloned()
        .unwrap_or_default();
    assert_eq!(ep["GlobalIPv6Address"], e1.ip.to_string(), "{info}");
    assert_eq!(ep["IPv6Gateway"], "fd00:91:20::1", "{info}");
    // Docker set the default route netd's Join answer named.
    let routes = netd_tests::cmd::ip_ns(&a1.ns, &["-6", "route", "show", "default"]).unwrap();
    assert!(routes.contains("via fd00:91:20::1"), "{routes}");
    // ping6 from inside the Docker container, then every protocol with
    // the sender's own address; the other network is dropped by netd.
    let ping = || {
        d.docker(&["exec", "a1", "ping", "-c1", "-W2", &e2.ip.to_string()])
            .success()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ping() {
        assert!(
            std::time::Instant::now() < deadline,
            "a1 cannot ping6 a2 ({})",
            e2.ip
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    bed.expect(&[
        allow(&e1, &e2),
        allow(&e2, &e1),
        dropped(&e1, &f1, "network-isolation"),
        dropped(&f1, &e1, "network-isolation"),
    ]);
    assert_eq!(bed.map_entries("ENDPOINT6"), 3);
    let web = published_over_ipv6(&bed, &d, &world);
    for c in [&a1, &a2, &b1, &web] {
        d.rm(c);
    }
    d.ok(&["network", "rm", "v6a", "v6b"]);
    for map in ["ENDPOINT6", "ENDPOINT6_BY_IP", "NETWORKS6"] {
        assert_eq!(bed.map_entries(map), 0, "{map} entries left behind");
    }
}

/// Published ports of a dual-stack Docker network (dockerd hands netd
/// each HostIP as typed): `-p 8080:80` on both families (the same host
/// port for `-p 85`), `[::]:8081:81` on IPv6 only. The world reaches
/// them over IPv6 with its own address, `-p 8080:80` over IPv4 too,
/// `[::]:8081` not over IPv4. Returns the container.
fn published_over_ipv6(bed: &Bed, d: &Dockerd<'_>, world: &str) -> DCtr {
    let web = d.run(
        "web6",
        &[
            "-p",
            "85",
            "-p",
            "8080:80",
            "-p",
            "[::]:8081:81",
            "-p",
            "8080:80/udp",
            "--network",
            "v6a",
        ],
    );
    let name = d.endpoint_name(&web, "v6a");
    let picked = host_port(bed, &name, 85, "tcp");
    assert_eq!(
        bed.port_lines(&name),
        [
            "80/tcp -> 0.0.0.0:8080".to_string(),
            "80/tcp -> [::]:8080".into(),
            "80/udp -> 0.0.0.0:8080".into(),
            "80/udp -> [::]:8080".into(),
            "81/tcp -> [::]:8081".into(),
            format!("85/tcp -> 0.0.0.0:{picked}"),
            format!("85/tcp -> [::]:{picked}"),
        ],
        "netd port {name}"
    );
    let srv = PortServer::start_dual(&web.ns, &[80, 81, 85], &[80]);
    let reached = [
        (P::Tcp, at6(8080), 80),
        (P::Udp, at6(8080), 80),
        (P::Tcp, at6(8081), 81),
        (P::Tcp, at6(picked), 85),
        (P::Tcp, at4(8080), 80),
        (P::Udp, at4(8080), 80),
        (P::Tcp, at4(picked), 85),
    ];
    world_reaches(
        world,
        &srv,
        &reached,
        &[(P::Tcp, at4(8081))],
        "world -> Docker published ports over IPv6",
    );
    web
}

/// The host port netd published for `container_port/proto` of netd
/// container `name`.
fn host_port(bed: &Bed, name: &str, container_port: u16, proto: &str) -> u16 {
    let v = bed.ctr_info(name);
    v["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["ContainerPort"] == container_port && p["Protocol"] == proto)
        .and_then(|p| p["HostPort"].as_u64())
        .unwrap_or_else(|| panic!("{name} publishes no {container_port}/{proto}: {v}")) as u16
}

#[test]
fn published_ports_from_world_and_other_networks() {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world();
    let Some(d) = bed_with_docker(&bed, options()) else {
        return;
    };
    d.network("pub", &["--subnet", "10.91.7.0/24"]);
    d.network("other", &["--subnet", "10.91.8.0/24"]);
    let web = d.run(
        "web",
        &[
            "--network",
            "pub",
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            "9000-9001:90-91",
            "-p",
            "203.0.113.2:7070:70",
            "-p",
            "7100-7105:71",
            "-p",
            "81",
        ],
    );
    let srv = PortServer::start(&web.ns, &[80, 90, 91, 70, 71, 81], &[53]);
    let name = d.endpoint_name(&web, "pub");
    let in_range = host_port(&bed, &name, 71, "tcp");
    assert!((7100..=7105).contains(&in_range), "71 on {in_range}");
    let picked = host_port(&bed, &name, 81, "tcp");
    assert!(picked != 0 && picked != 81, "81 on {picked}");

    let mut errs = Errs::default();
    for (p, host, port) in [
        (P::Tcp, 8080, 80),
        (P::Udp, 5353, 53),
        (P::Tcp, 9000, 90),
        (P::Tcp, 9001, 91),
        (P::Tcp, 7070, 70),
        (P::Tcp, in_range, 71),
        (P::Tcp, picked, 81),
    ] {
        let dst = sa(UPLINK, host);
        errs.answer(
            &format!("{p:?} world -> {dst}"),
            ask_from(&world, p, dst),
            port,
            dst,
            &[WORLD],
        );
    }
    errs.done("world -> published ports (client address kept)");

    // A container on another network, via the host's address.
    let cli = d.run("cli", &["--network", "other"]);
    let cli_ip = d.ip(&cli, "other");
    let gw_other = bed.gateway(&d.ok(&["network", "inspect", "-f", "{{.Id}}", "other"]));
    let mut errs = Errs::default();
    for (p, host, port) in [(P::Tcp, 8080, 80), (P::Udp, 5353, 53), (P::Tcp, 7070, 70)] {
        let dst = sa(UPLINK, host);
        errs.answer(
            &format!("{p:?} cli -> {dst}"),
            ask_from(&cli.ns, p, dst),
            port,
            dst,
            &[cli_ip],
        );
    }
    // The host-IP mapping is not on the other host addresses.
    let hits = srv.count();
    errs.ok(
        "cli -> gateway:7070 (published on 203.0.113.2 only)",
        unanswered_from(&cli.ns, P::Tcp, sa(gw_other, 7070)),
    );
    errs.check(srv.count() == hits, || {
        "7070 answered via another address".into()
    });
    errs.done("other network -> published ports");

    // Direct to the container's address: not from the other network
    // (counted), not from the world even with a route to the subnet.
    let web_ip = d.ip(&web, "pub");
    let before = (srv.count(), bed.drop_count("network-isolation"));
    let mut errs = Errs::default();
    errs.ok(
        "cli -> web:80 directly",
        unanswered_from(&cli.ns, P::Tcp, sa(web_ip, 80)),
    );
    netd_tests::cmd::ip_ns(
        &world,
        &["route", "add", "10.91.7.0/24", "via", "203.0.113.2"],
    )
    .unwrap();
    errs.ok(
        "world -> web:80 directly",
        unanswered_from(&world, P::Tcp, sa(web_ip, 80)),
    );
    errs.check(srv.count() == before.0, || {
        format!("direct hits: {:?}", &srv.hits()[before.0..])
    });
    errs.check(bed.drop_count("network-isolation") > before.1, || {
        "no isolation drop counted".into()
    });
    errs.done("direct access");

    // A port already published: Docker's CLI shows netd's message, and the
    // first mapping is untouched.
    let err = d.fail(&[
        "run",
        "-d",
        "--name",
        "dup",
        "--network",
        "pub",
        "-p",
        "8080:80",
        IMAGE,
        "sleep",
        "100",
    ]);
    assert!(
        err.contains("port 0.0.0.0:8080/tcp is already published by"),
        "{err}"
    );
    d.ok(&["rm", "-f", "dup"]);
    // An IPv6 host address for a container without IPv6: refused with
    // what to do, in Docker's CLI.
    let err = d.fail(&[
        "run",
        "-d",
        "--name",
        "v6",
        "--network",
        "pub",
        "-p",
        "[::]:8090:80",
        IMAGE,
        "sleep",
        "100",
    ]);
    assert!(
        err.contains("the container has no IPv6 address") && err.contains("--ipv6"),
        "{err}"
    );
    d.ok(&["rm", "-f", "v6"]);
    let ls = bed.json(&["container", "ls", "--format", "json"]);
    assert_eq!(
        ls.as_array().map(Vec::len),
        Some(2),
        "the refused endpoint is gone: {ls}"
    );
    let mut errs = Errs::default();
    errs.answer(
        "world -> 8080 after the refusal",
        ask_from(&world, P::Tcp, sa(UPLINK, 8080)),
        80,
        sa(UPLINK, 8080),
        &[WORLD],
    );
    errs.done("after a refused publish");

    // docker rm -f ends every mapping.
    drop(srv);
    d.rm(&web);
    let mut errs = Errs::default();
    for (p, host) in [(P::Tcp, 8080), (P::Udp, 5353), (P::Tcp, 7070)] {
        errs.ok(
            &format!("{p:?} world -> {host} after rm"),
            unanswered_from(&world, p, sa(UPLINK, host)),
        );
    }
    errs.done("after docker rm -f");
    assert_eq!(bed.map_entries("PUBLISHED"), 0, "PUBLISHED must be empty");
}

/// Same-network traffic and the published port from the world, once.
fn still_serving(d: &Dockerd<'_>, world: &str, web: &DCtr, peer: &DCtr, what: &str) {
    let srv = PortServer::start(&web.ns, &[80], &[]);
    reach_both(&d.ep(web, "keep"), &d.ep(peer, "keep"));
    let mut errs = Errs::default();
    let dst = sa(UPLINK, 8080);
    errs.answer(
        "world -> 8080",
        ask_from(world, P::Tcp, dst),
        80,
        dst,
        &[WORLD],
    );
    errs.done(what);
    drop(srv);
}

fn netd_containers(bed: &Bed) -> usize {
    let ls = bed.json(&["container", "ls", "--format", "json"]);
    ls.as_array().map_or(0, Vec::len)
}

#[test]
fn agent_and_dockerd_restarts_lose_nothing() {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world();
    let opts = Options {
        live_restore: true,
        ..options()
    };
    let Some(d) = bed_with_docker(&bed, opts) else {
        return;
    };
    d.network("keep", &["--subnet", "10.91.9.0/24"]);
    let web = d.run("web", &["--network", "keep", "-p", "8080:80"]);
    let peer = d.run("peer", &["--network", "keep"]);
    let gone = d.run("gone", &["--network", "keep"]);
    let ips = (d.ip(&web, "keep"), d.ip(&peer, "keep"));
    still_serving(&d, &world, &web, &peer, "before the restarts");
    let veths = |bed: &Bed| {
        bed.host_links()
            .iter()
            .filter(|l| l.starts_with("nd"))
            .count()
    };
    assert_eq!(veths(&bed), 3);

    bed.stop_agent();
    let socket = bed.plugin_dir().join("netd.sock");
    assert!(!socket.exists(), "SIGTERM must remove {}", socket.display());
    still_serving(&d, &world, &web, &peer, "while the agent is stopped");
    // Docker removes a container while the driver is away (its calls fail).
    d.rm(&gone);
    bed.start_agent();
    assert!(
        socket.exists(),
        "the restarted agent serves the driver again"
    );
    still_serving(&d, &world, &web, &peer, "after the agent restart");
    assert_eq!(
        netd_containers(&bed),
        2,
        "the endpoint Docker removed is released"
    );
    assert_eq!(veths(&bed), 2, "and its veth pair is gone");

    d.restart_dockerd();
    assert_eq!(
        (d.ip(&web, "keep"), d.ip(&peer, "keep")),
        ips,
        "same addresses"
    );
    still_serving(&d, &world, &web, &peer, "after the dockerd restart");
    let late = d.run("late", &["--network", "keep"]);
    reach_both(&d.ep(&late, "keep"), &d.ep(&web, "keep"));
    assert_eq!(netd_containers(&bed), 3);
}

#[test]
fn removal_leaves_nothing_and_bad_input_gets_netds_message() {
    let bed = Bed::without_agent(&[]);
    let Some(d) = bed_with_docker(&bed, options()) else {
        return;
    };
    let (links0, pins0) = (bed.host_links(), bed.pinned_links());
    d.network("tidy", &["--subnet", "10.91.10.0/24"]);
    let a = d.run(
        "ta",
        &["--network", "tidy", "-p", "8081:80", "-p", "8081:80/udp"],
    );
    let b = d.run("tb", &["--network", "tidy"]);
    reach_both(&d.ep(&a, "tidy"), &d.ep(&b, "tidy"));
    assert_eq!(bed.map_entries("ENDPOINTS"), 2);
    assert_eq!(bed.map_entries("PUBLISHED"), 2);
    d.rm(&a);
    d.rm(&b);
    d.ok(&["network", "rm", "tidy"]);
    assert_eq!(bed.host_links(), links0, "links left behind");
    assert_eq!(bed.pinned_links(), pins0, "pins left behind");
    for map in ["ENDPOINTS", "ENDPOINT_BY_IP", "PUBLISHED"] {
        assert_eq!(bed.map_entries(map), 0, "{map} entries left behind");
    }
    let nets = bed.json(&["network", "ls", "--format", "json"]);
    assert_eq!(
        nets.as_array().map(Vec::len),
        Some(1),
        "only the default: {nets}"
    );

    // Bad input: Docker's CLI shows netd's one-line reason, nothing is made.
    bed.network("native", &["--subnet", "10.91.11.0/24"]);
    let before = bed.snapshot(&["native"], &[]);
    for (args, says) in [
        (
            vec!["--subnet", "10.91.11.0/25", "clash"],
            "subnet 10.91.11.0/25 overlaps network native (10.91.11.0/24)",
        ),
        (
            vec!["-o", "icc=maybe", "badopt"],
            "option icc must be true or false",
        ),
        (
            vec!["-o", "com.docker.network.driver.mtu=9", "badmtu"],
            "mtu 9 is out of range",
        ),
        (
            vec![
                "--ipv6",
                "--subnet",
                "fd00:91::/64",
                "--subnet",
                "fd00:92::/64",
                "v6two",
            ],
            "one IPv6 subnet",
        ),
    ] {
        let mut all = vec!["network", "create", "-d", "netd"];
        all.extend(args);
        let err = d.fail(&all);
        assert!(err.contains(says), "expected {says:?} in: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    bed.assert_unchanged(&before, &["native"], &[], "refused docker network create");

    // A host port a host process holds.
    d.network("ports", &[]);
    let holder = netd_tests::netns::spawn_in(bed.host_ns(), || {
        let l = std::net::TcpListener::bind(("0.0.0.0", 8082))?;
        std::thread::sleep(std::time::Duration::from_secs(8));
        drop(l);
        Ok(())
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let err = d.fail(&[
        "run",
        "-d",
        "--name",
        "taken",
        "--network",
        "ports",
        "-p",
        "8082:80",
        IMAGE,
        "sleep",
        "100",
    ]);
    assert!(
        err.contains("host port 0.0.0.0:8082/tcp is already in use on the host"),
        "{err}"
    );
    d.ok(&["rm", "-f", "taken"]);
    let _ = netd_tests::netns::join(holder);
    assert_eq!(netd_containers(&bed), 0, "the refused endpoint is gone");

    // Calls the driver does not know, and bodies it cannot read.
    let sock = bed.plugin_dir().join("netd.sock");
    for (path, body, says) in [
        (
            "/NetworkDriver.Bogus",
            "{}",
            "does not implement NetworkDriver.Bogus",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            "{",
            "bad NetworkDriver.CreateNetwork request",
        ),
        (
            "/NetworkDriver.Join",
            r#"{"NetworkID":"ab","EndpointID":"cd"}"#,
            "endpoint cd not found",
        ),
        ("/a/b", "", "not a Docker plugin call"),
    ] {
        let r = post_unix(&sock, path, body).unwrap_or_else(|e| panic!("{path}: {e:#}"));
        assert_ne!(r.status, 200, "{path}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/vnd.docker.plugins.v1.2+json"),
            "{path}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {r:?}"));
        let err = v["Err"].as_str().unwrap_or_default();
        assert!(err.contains(says), "{path}: expected {says:?} in {v}");
    }
    let r = post_unix(&sock, "/Plugin.Activate", "").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"Implements":["NetworkDriver"]}"#)
    );
    // Still serving Docker.
    d.network("after", &[]);
    d.run("fine", &["--network", "after"]);
}
