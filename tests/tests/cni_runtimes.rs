//! Real runtimes driving `netd-cni` (issue 12): podman 4.3 with the CNI
//! backend and containerd 1.6's `ctr run --cni`, each inside the test's
//! own host netns with private storage, config and cgroups
//! (`netd_tests::runtimes`). Skipped, with the reason, where a package is
//! missing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::Duration;

use netd_tests::cmd::run_ok;
use netd_tests::cni::{call, conf, plain_env, tcp_via};
use netd_tests::netns::spawn_in;
use netd_tests::ports::{PortServer, P};
use netd_tests::runtimes::{missing, Containerd, Podman};
use netd_tests::traffic::{dropped, icmp, Ep};
use netd_tests::wait::wait_until;
use netd_tests::world::{at4, at6, world_reaches, UPLINK, WORLD};
use netd_tests::{blocked_both, reach_both, Bed};

fn http_get(from_ns: &str, dst: SocketAddrV4) -> anyhow::Result<String> {
    netd_tests::netns::join(spawn_in(from_ns, move || {
        let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    }))
}

fn addr_of(podman: &Podman, name: &str, net: &str) -> Ipv4Addr {
    let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
    podman
        .ok(&["inspect", "-f", &f, name])
        .parse()
        .expect("an address")
}

/// Waits (≤ 10 s) until netd no longer has container `name`.
fn wait_gone(bed: &Bed, name: &str) {
    let what = format!("netd to forget {name} once its netns went away");
    wait_until(&what, Duration::from_secs(10), || {
        !bed.netd(&["container", "inspect", name]).success()
    });
}

/// The host PID of a running ctr task.
fn task_pid(ctrd: &Containerd, id: &str) -> u32 {
    let out = ctrd.ctr(&["task", "ls"]);
    out.stdout
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id))
                .then(|| f.get(1)?.parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no task {id}:\n{out}"))
}

/// `podman run --network NET -p 8080:80` on netd: reached from the world
/// netns with the client's address (conmon listening on the port does not
/// get in the way), two podman networks isolated from each other (witness:
/// traffic within each), and `podman rm -f` releasing everything.
#[test]
fn podman_runs_on_netd_networks() {
    if let Some(why) = missing(Podman::TOOLS) {
        eprintln!("podman_runs_on_netd_networks {why}");
        return;
    }
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world6();
    bed.start_agent();
    bed.wait_uplink(UPLINK, netd_tests::world::UPLINK_LIMIT);
    let links_before = bed.host_links();
    let podman = Podman::new(&bed).unwrap_or_else(|e| panic!("setting up podman: {e:#}"));
    podman.network("pa", "10.95.1.0/24").unwrap();
    podman.network("pb", "10.95.2.0/24").unwrap();
    podman
        .network_with(
            "p6",
            serde_json::json!({"subnet": "10.95.6.0/24", "ipv6": true, "subnet6": "fd00:95:6::/64"}),
        )
        .unwrap();
    podman
        .network_with(
            "p6only",
            serde_json::json!({"ipv6": true, "ipv4": false, "subnet6": "fd00:95:7::/64"}),
        )
        .unwrap();
    podman.start(
        &["--name", "web", "--network", "pa", "-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    podman.start(
        &["--name", "echo", "--network", "pa", "-p", "8081:81"],
        &["sleep", "300"],
    );
    podman.start(&["--name", "a2", "--network", "pa"], &["sleep", "300"]);
    podman.start(&["--name", "b1", "--network", "pb"], &["sleep", "300"]);
    // A second container on the same host port: netd refuses the ADD,
    // podman reports it and its DEL after the failed ADD leaves nothing.
    let parent = format!("/{}", podman.cgroup_parent);
    let clash = podman.run(&[
        "run",
        "-d",
        "--cgroup-parent",
        &parent,
        "--name",
        "clash",
        "--network",
        "pa",
        "-p",
        "8080:80",
        "localhost/busybox",
        "sleep",
        "300",
    ]);
    assert!(!clash.success(), "a second -p 8080 started:\n{clash}");
    assert!(clash.stderr.contains("already published by web"), "{clash}");
    assert!(
        !bed.netd(&["container", "inspect", "clash"]).success(),
        "netd kept the failed ADD"
    );
    let _ = podman.run(&["rm", "-f", "-t", "0", "clash"]);
    // netd sees them as CNI-made containers named as podman names them.
    let web = bed.ctr_info("web");
    assert_eq!(web["Origin"], "cni");
    assert_eq!(web["Ports"][0]["HostPort"], 8080);
    let (echo_ns, a2_ns, b1_ns) = (podman.netns("echo"), podman.netns("a2"), podman.netns("b1"));
    let web_ip = addr_of(&podman, "web", "pa");
    let a2 = Ep::new("a2", &a2_ns, addr_of(&podman, "a2", "pa"));
    let b1 = Ep::new("b1", &b1_ns, addr_of(&podman, "b1", "pb"));
    let echo = Ep::new("echo", &echo_ns, addr_of(&podman, "echo", "pa"));
    // Within pa: ping from inside the container, TCP both ways.
    podman.ok(&[
        "exec",
        "a2",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &web_ip.to_string(),
    ]);
    icmp(&a2_ns, web_ip).unwrap();
    reach_both(&a2, &echo);
    // Names: podman writes netd's resolver (the result's dns) into the
    // container's resolv.conf, and the container names resolve.
    let resolv = podman.ok(&["exec", "a2", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    let answer = podman.ok(&["exec", "a2", "busybox", "nslookup", "web", "127.0.0.11"]);
    assert!(answer.contains(&web_ip.to_string()), "{answer}");
    // pa and pb are isolated, both ways.
    blocked_both(&a2, &b1);
    // The world reaches the published ports through the uplink: httpd
    // answers, and the container sees the world's own address.
    let page = http_get(&world, SocketAddrV4::new(UPLINK, 8080)).unwrap();
    assert!(page.contains("netd-cni via podman"), "{page}");
    let peer = tcp_via(&echo_ns, 81, &world, SocketAddrV4::new(UPLINK, 8081)).unwrap();
    assert_eq!(peer, WORLD, "the client's address is kept");
    podman_publishes_over_ipv6(&bed, &podman, &world);
    podman_on_an_ipv6_only_network(&bed, &podman, &world);
    // podman rm -f: netd forgets them, interfaces and ports are gone.
    for name in ["web", "echo", "a2", "b1", "six", "only6"] {
        podman.ok(&["rm", "-f", "-t", "0", name]);
    }
    let ls = bed.json(&["container", "ls", "--format", "json"]);
    assert_eq!(ls, serde_json::json!([]), "netd still has containers");
    let mut now = bed.host_links();
    now.retain(|l| !l.starts_with("br-"));
    assert_eq!(now, links_before, "interfaces left behind");
    assert!(
        http_get(&world, SocketAddrV4::new(UPLINK, 8080)).is_err(),
        "the published port still answers"
    );
}

/// podman on a dual-stack netd network: `-p 8090:80` on both families,
/// `-p [::]:8091:81` on IPv6 only (conmon listening on them does not get
/// in the way); the world reaches them over IPv6 with its own address;
/// `[::]` publishes nothing on IPv4. `-p [::]:…` on an IPv4-only network
/// is refused with netd's reason, in podman's words.
fn podman_publishes_over_ipv6(bed: &Bed, podman: &Podman, world: &str) {
    podman.start(
        &[
            "--name",
            "six",
            "--network",
            "p6",
            "-p",
            "8090:80",
            "-p",
            "[::]:8091:81",
        ],
        &["sleep", "300"],
    );
    assert_eq!(
        bed.port_lines("six"),
        [
            "80/tcp -> 0.0.0.0:8090",
            "80/tcp -> [::]:8090",
            "81/tcp -> [::]:8091"
        ],
        "netd port six"
    );
    let srv = PortServer::start_dual(&podman.netns("six"), &[80, 81], &[]);
    let reached = [
        (P::Tcp, at6(8090), 80),
        (P::Tcp, at4(8090), 80),
        (P::Tcp, at6(8091), 81),
    ];
    world_reaches(
        world,
        &srv,
        &reached,
        &[(P::Tcp, at4(8091))],
        "world -> podman ports over IPv6",
    );
    drop(srv);
    let parent = format!("/{}", podman.cgroup_parent);
    let refused = podman.run(&[
        "run",
        "-d",
        "--cgroup-parent",
        &parent,
        "--name",
        "v4only",
        "--network",
        "pa",
        "-p",
        "[::]:8092:80",
        "localhost/busybox",
        "sleep",
        "300",
    ]);
    assert!(
        !refused.success(),
        "-p [::] on an IPv4-only network started:\n{refused}"
    );
    assert!(
        refused.stderr.contains("the container has no IPv6 address"),
        "{refused}"
    );
    let _ = podman.run(&["rm", "-f", "-t", "0", "v4only"]);
}

/// podman on an IPv6-only netd network (the conflist's `"ipv4": false`,
/// made on first use): podman takes the IPv6-only result (its inspect
/// shows the IPv6 address, no IPv4), the container has only that address
/// and the IPv6 default route, netd drops IPv6 between it and `six` (of
/// the dual-stack network p6) both ways; `-p 8095:80` and `-p
/// [::]:8096:81` are reached from the world over IPv6 with its own
/// address, and `[::]:8096` not over IPv4. (IPv4 to 8095 reaches conmon's
/// own tcp4 listener, which podman opens for a mapping without host
/// address whatever the network: not netd's.)
fn podman_on_an_ipv6_only_network(bed: &Bed, podman: &Podman, world: &str) {
    podman.start(
        &[
            "--name",
            "only6",
            "--network",
            "p6only",
            "-p",
            "8095:80",
            "-p",
            "[::]:8096:81",
        ],
        &["sleep", "300"],
    );
    let field = |name: &str, net: &str, f: &str| {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").{f}}}}}");
        podman.ok(&["inspect", "-f", &f, name])
    };
    let v6_of = |name: &str, net: &str| -> std::net::Ipv6Addr {
        let a = field(name, net, "GlobalIPv6Address");
        a.parse()
            .unwrap_or_else(|e| panic!("podman shows {a:?} for {name}: {e}"))
    };
    let ip6 = v6_of("only6", "p6only");
    assert!(
        ip6.segments()[..4] == [0xfd00, 0x95, 0x7, 0],
        "podman shows {ip6}"
    );
    let v4_shown = field("only6", "p6only", "IPAddress");
    assert_eq!(v4_shown, "", "podman shows an IPv4 address");
    assert_eq!(field("only6", "p6only", "IPv6Gateway"), "fd00:95:7::1");
    let ns = podman.netns("only6");
    let v4 = netd_tests::cmd::ip_ns(&ns, &["-4", "-o", "addr", "show", "dev", "eth0"]).unwrap();
    assert_eq!(v4.trim(), "", "IPv4 in an IPv6-only container");
    let route = netd_tests::cmd::ip_ns(&ns, &["-6", "route", "show", "default"]).unwrap();
    assert!(route.contains("via fd00:95:7::1"), "{route}");
    assert_eq!(
        bed.port_lines("only6"),
        ["80/tcp -> [::]:8095", "81/tcp -> [::]:8096"],
        "netd port only6"
    );
    let me = Ep::v6("only6", &ns, ip6);
    let other = &Ep::v6("six", &podman.netns("six"), v6_of("six", "p6"));
    bed.expect(&[
        dropped(&me, other, "network-isolation"),
        dropped(other, &me, "network-isolation"),
    ]);
    let srv = PortServer::start_dual(&ns, &[80, 81], &[]);
    world_reaches(
        world,
        &srv,
        &[(P::Tcp, at6(8095), 80), (P::Tcp, at6(8096), 81)],
        &[(P::Tcp, at4(8096))],
        "world -> podman ports on an IPv6-only network",
    );
}

/// `ctr run --cni` of containerd 1.6: a foreground task is on the netd
/// network (its own address, the gateway and a peer answer) and its DEL
/// (with an empty CNI_NETNS, after the task ended) releases it; a
/// detached task's `kill` calls no DEL, netd releases it when its netns
/// goes; GC removes the attachments the runtime no longer lists.
#[test]
fn ctr_run_cni_on_netd() {
    if let Some(why) = missing(Containerd::TOOLS) {
        eprintln!("ctr_run_cni_on_netd {why}");
        return;
    }
    let bed = Bed::new();
    let links_before = bed.host_links();
    let ctrd = Containerd::new(&bed, "ctrnet", "10.96.0.0/24")
        .unwrap_or_else(|e| panic!("setting up containerd: {e:#}"));
    // A peer the foreground task pings: a CLI container on the same network
    // (the network exists once the first ADD made it, so a detached task
    // goes first).
    let two = ctrd.rootfs("two", "exec sleep 300").unwrap();
    let out = ctrd.run("two", &two, true);
    assert!(
        out.success(),
        "ctr run -d:\n{out}\ncontainerd log:\n{}",
        ctrd.log()
    );
    let info = bed.ctr_info("default-two");
    assert_eq!(info["Origin"], "cni");
    let two_ip = info["Networks"]["ctrnet"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let script = format!(
        "ip -4 addr show eth0; ping -c 1 -W 2 10.96.0.1 && echo GATEWAY-OK; \
         ping -c 1 -W 2 {two_ip} && echo PEER-OK"
    );
    let one = ctrd.rootfs("one", &script).unwrap();
    let out = ctrd.run("one", &one, false);
    assert!(
        out.success(),
        "ctr run --rm:\n{out}\ncontainerd log:\n{}",
        ctrd.log()
    );
    assert!(out.stdout.contains("inet 10.96.0."), "{out}");
    assert!(
        out.stdout.contains("GATEWAY-OK") && out.stdout.contains("PEER-OK"),
        "{out}"
    );
    // The foreground run ended: its DEL came and released everything.
    let names: Vec<String> = bed
        .json(&["container", "ls", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["default-two".to_string()]);
    // A detached task's kill and rm call no DEL; netd notices the netns is
    // gone and releases the container itself (bounded wait).
    assert!(ctrd.ctr(&["task", "kill", "-s", "KILL", "two"]).success());
    wait_gone(&bed, "default-two");
    let _ = ctrd.ctr(&["task", "rm", "-f", "two"]);
    assert!(ctrd.ctr(&["container", "rm", "two"]).success());
    // GC, as a runtime calls it with the attachments it still knows:
    // "three" is not among them and goes while its task runs; "four" stays.
    for id in ["three", "four"] {
        let root = ctrd.rootfs(id, "exec sleep 300").unwrap();
        let out = ctrd.run(id, &root, true);
        assert!(out.success(), "ctr run -d {id}:\n{out}");
    }
    let pid = task_pid(&ctrd, "three");
    let mut gc = conf("1.1.0", "ctrnet", &bed.socket(), serde_json::json!({}));
    gc["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "default-four", "ifname": "eth0"}]);
    call(&plain_env("GC"), &gc.to_string()).ok();
    assert!(!bed
        .netd(&["container", "inspect", "default-three"])
        .success());
    assert!(bed
        .netd(&["container", "inspect", "default-four"])
        .success());
    let inside = run_ok(
        "nsenter",
        &[&format!("--net=/proc/{pid}/ns/net"), "ip", "-o", "link"],
    )
    .unwrap();
    assert!(
        !inside.contains("eth0"),
        "GC left eth0 in the task's netns:\n{inside}"
    );
    for id in ["three", "four"] {
        let _ = ctrd.ctr(&["task", "kill", "-s", "KILL", id]);
    }
    wait_gone(&bed, "default-four");
    let mut now = bed.host_links();
    now.retain(|l| !l.starts_with("br-"));
    assert_eq!(now, links_before, "interfaces left behind");
}
