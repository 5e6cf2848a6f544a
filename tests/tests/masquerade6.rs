//! IPv6 egress (issue 13, SPEC section 4 "A -> W" for IPv6) with real
//! packets: NAT66 to the uplink's global IPv6 address on masquerading
//! networks, the container's own address on `--masquerade=false`
//! networks, nothing from internal networks; Packet Too Big from a router
//! beyond the uplink translated back into the container (path MTU
//! discovery); and the IPv6 fast path of eBPF host routing past a host
//! whose ip6tables FORWARD policy is DROP, with `--host-routing kernel` as
//! the negative control.
//!
//! Every bed's host netns gets the world of `netd_tests::world` with IPv6
//! on the uplink: `up0` 2001:db8:95::2/64 (UPLINK6), the world 2001:db8:95::1
//! (WORLD6), the host's IPv6 default route via the world.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddrV6, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use netd_tests::cmd::{ip_ns, run_ok, run_timeout};
use netd_tests::echo_watch::EchoWatch;
use netd_tests::netns::{join, path_of, spawn_in};
use netd_tests::world::{UPLINK6, UPLINK_LIMIT, WORLD6};
use netd_tests::{dropped, icmp, no_tcp, no_udp, tcp, udp, Bed, Ep};

const FAR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x96, 0, 0, 0, 0, 2);

/// A bed (agent args `args`) whose uplink has IPv6, the agent following
/// it; `before_agent` runs on the host netns first (a firewall).
fn bed6(args: &[&str], before_agent: impl FnOnce(&Bed)) -> (Bed, String) {
    let bed = Bed::without_agent(args);
    let world = bed.make_world6();
    before_agent(&bed);
    bed.start_agent();
    bed.wait_uplink6(UPLINK6, UPLINK_LIMIT);
    (bed, world)
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => panic!("expected an IPv6 address, got {a}"),
    }
}

/// Networks `m` (masquerade, the default), `flat` (`--masquerade=false`,
/// the world routes its subnet back via the host) and `int` (internal),
/// each dual-stack.
fn networks(bed: &Bed, world: &str) {
    let nets: [(&str, &str, &str, &[&str]); 3] = [
        ("m", "10.96.1.0/24", "fd00:96:1::/64", &[]),
        (
            "flat",
            "10.96.2.0/24",
            "fd00:96:2::/64",
            &["--masquerade=false"],
        ),
        ("int", "10.96.3.0/24", "fd00:96:3::/64", &["--internal"]),
    ];
    for (name, v4, v6net, extra) in nets {
        let mut args = vec!["--subnet", v4, "--ipv6", "--subnet", v6net];
        args.extend_from_slice(extra);
        bed.network(name, &args);
    }
    ip_ns(
        world,
        &[
            "-6",
            "route",
            "add",
            "fd00:96:2::/64",
            "via",
            &UPLINK6.to_string(),
        ],
    )
    .expect("world route to the routed network");
}

#[test]
fn ipv6_egress_is_masqueraded_routed_or_refused_by_network() {
    let (bed, world) = bed6(&[], |_| {});
    networks(&bed, &world);
    let c = bed.container("c", &["--network", "m"]);
    let r = bed.container("r", &["--network", "flat"]);
    let i = bed.container("i", &["--network", "int"]);
    let (c6, r6, i6) = (bed.ep6(&c, "m"), bed.ep6(&r, "flat"), bed.ep6(&i, "int"));
    let w6 = Ep::v6("world/v6", &world, WORLD6);

    // Masquerade: TCP, UDP and echo leave with the uplink's IPv6 address,
    // and their replies come back to the container.
    let seen = tcp(&c.ns, &w6).expect("c -> world over TCP");
    assert_eq!(v6(seen), UPLINK6, "TCP from c seen from {seen}");
    let seen = udp(&c.ns, &w6).expect("c -> world over UDP");
    assert_eq!(v6(seen), UPLINK6, "UDP from c seen from {seen}");
    let watch = EchoWatch::start(&world, true);
    icmp(&c.ns, WORLD6).expect("c pings the world");
    let sources: Vec<IpAddr> = watch.finish().into_iter().map(|(s, _)| s).collect();
    assert!(
        !sources.is_empty() && sources.iter().all(|s| *s == UPLINK6),
        "echo requests from c arrived from {sources:?}, expected {UPLINK6} only"
    );
    assert!(!sources.contains(&c6.ip));

    // --masquerade=false: the container's own address.
    let seen = tcp(&r.ns, &w6).expect("r -> world over TCP (routed)");
    assert_eq!(seen, r6.ip, "routed TCP from r");
    let seen = udp(&r.ns, &w6).expect("r -> world over UDP (routed)");
    assert_eq!(seen, r6.ip, "routed UDP from r");

    // Internal: nothing leaves, and netd is the one that drops it.
    bed.expect(&[dropped(&i6, &w6, "internal-network")]);

    // NAT66 state shows: conntrack holds IPv6 flows.
    let st = bed.status();
    assert_eq!(st.uplinks["up0"].address6, Some(UPLINK6));
}

/// `ip6tables -P FORWARD DROP` in the bed's host netns.
fn forward_drop(bed: &Bed) {
    let net = format!("--net={}", path_of(bed.host_ns()).display());
    let out = run_timeout(
        "nsenter",
        &[&net, "ip6tables", "-P", "FORWARD", "DROP"],
        Duration::from_secs(20),
    );
    assert!(out.success(), "ip6tables FORWARD DROP: {out}");
}

fn shortcuts(bed: &Bed, name: &str) -> u64 {
    bed.status()
        .host_routing
        .shortcuts
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("no shortcut {name} in status"))
}

fn firewall_fixture_usable() -> bool {
    if !matches!(
        std::env::var("NETD_TEST_FIREWALL").as_deref(),
        Err(_) | Ok("" | "none")
    ) {
        eprintln!("SKIPPED: this test builds its own firewall; run it without NETD_TEST_FIREWALL");
        return false;
    }
    if !PathBuf::from("/usr/sbin/ip6tables").exists() {
        eprintln!("SKIPPED: ip6tables is missing (cargo xtask setup installs iptables)");
        return false;
    }
    true
}

#[test]
fn ipv6_fast_path_passes_a_forward_drop_host_and_kernel_routing_does_not() {
    if !firewall_fixture_usable() {
        return;
    }
    let (bed, world) = bed6(&["--host-routing", "ebpf"], forward_drop);
    networks(&bed, &world);
    let c = bed.container("c", &["--network", "m"]);
    let r = bed.container("r", &["--network", "flat"]);
    let r6 = bed.ep6(&r, "flat");
    let w6 = Ep::v6("world/v6", &world, WORLD6);
    let fib = shortcuts(&bed, "fib-redirect") + shortcuts(&bed, "fib-redirect-neigh");
    let peer = shortcuts(&bed, "peer-routed");
    assert_eq!(
        v6(tcp(&c.ns, &w6).expect("c -> world, FORWARD DROP")),
        UPLINK6
    );
    assert_eq!(v6(udp(&c.ns, &w6).expect("c -> world UDP")), UPLINK6);
    assert_eq!(tcp(&r.ns, &w6).expect("r -> world (routed)"), r6.ip);
    assert!(
        shortcuts(&bed, "fib-redirect") + shortcuts(&bed, "fib-redirect-neigh") > fib,
        "container -> world over IPv6 should take the fib redirect"
    );
    assert!(
        shortcuts(&bed, "peer-routed") > peer,
        "replies should be delivered into the containers"
    );
    drop(bed);

    // Negative control: the kernel forwards, and the FORWARD policy drops.
    let (bed, world) = bed6(&["--host-routing", "kernel"], forward_drop);
    networks(&bed, &world);
    let c = bed.container("c", &["--network", "m"]);
    let r = bed.container("r", &["--network", "flat"]);
    let w6 = Ep::v6("world/v6", &world, WORLD6);
    no_tcp(&c.ns, &w6).expect("kernel routing: c -> world dropped by FORWARD");
    no_udp(&c.ns, &w6).expect("kernel routing: c -> world UDP dropped by FORWARD");
    no_tcp(&r.ns, &w6).expect("kernel routing: r -> world dropped by FORWARD");
}

/// World router -> far netns over a 1280-byte link; far's route
/// advertises a 1440-byte MSS, so the container's full-size segments make
/// the world send Packet Too Big to the uplink's address. Translated back
/// (outer destination and quoted source), it reaches the container, which
/// lowers its path MTU, and a 1 MB upload completes.
#[test]
fn packet_too_big_from_a_router_reaches_the_container() {
    let (bed, world) = bed6(&[], |_| {});
    let far = bed.new_netns("far");
    let steps: &[(&str, &[&str])] = &[
        (
            &world,
            &[
                "link", "add", "wf0", "mtu", "1280", "type", "veth", "peer", "name", "f0", "netns",
                &far,
            ],
        ),
        (
            &world,
            &[
                "-6",
                "addr",
                "add",
                "2001:db8:96::1/64",
                "dev",
                "wf0",
                "nodad",
            ],
        ),
        (&world, &["link", "set", "wf0", "up"]),
        (&far, &["link", "set", "lo", "up"]),
        (&far, &["link", "set", "f0", "mtu", "1280"]),
        (
            &far,
            &[
                "-6",
                "addr",
                "add",
                "2001:db8:96::2/64",
                "dev",
                "f0",
                "nodad",
            ],
        ),
        (&far, &["link", "set", "f0", "up"]),
        (
            &far,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                "2001:db8:96::1",
                "advmss",
                "1440",
            ],
        ),
    ];
    for (ns, args) in steps {
        ip_ns(ns, args).unwrap_or_else(|e| panic!("building the far side: {e:#}"));
    }
    run_ok(
        "ip",
        &[
            "netns",
            "exec",
            &world,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ],
    )
    .expect("forwarding in the world");
    bed.network(
        "m",
        &[
            "--subnet",
            "10.96.4.0/24",
            "--ipv6",
            "--subnet",
            "fd00:96:4::/64",
        ],
    );
    let a = bed.container("a", &["--network", "m"]);
    let f6 = Ep::v6("far/v6", &far, FAR);
    // Control: the path works at all, masqueraded.
    let seen = tcp(&a.ns, &f6).expect("control: a -> far over TCP");
    assert_eq!(v6(seen), UPLINK6);

    const LEN: usize = 1 << 20;
    let (ptx, prx) = mpsc::channel::<u16>();
    let server = spawn_in(&far, move || {
        let l = TcpListener::bind(SocketAddrV6::new(FAR, 0, 0, 0)).context("bind")?;
        let _ = ptx.send(l.local_addr()?.port());
        l.set_nonblocking(true)?;
        let start = Instant::now();
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(e).context("accept"),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut total = 0usize;
        let mut buf = [0u8; 65536];
        loop {
            let n = s.read(&mut buf).context("read")?;
            if n == 0 {
                break;
            }
            total += n;
        }
        s.write_all(format!("{total}\n").as_bytes())?;
        Ok(total)
    });
    let port = prx
        .recv_timeout(Duration::from_secs(5))
        .expect("far server port");
    let client = spawn_in(&a.ns, move || {
        let dst = SocketAddrV6::new(FAR, port, 0, 0);
        let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(5))?;
        s.set_write_timeout(Some(Duration::from_secs(20)))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(&vec![0x5a; LEN]).context("upload")?;
        s.shutdown(Shutdown::Write)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).context("answer")?;
        Ok(answer)
    });
    let answer = join(client);
    let route = ip_ns(&a.ns, &["-6", "route", "get", &FAR.to_string()]).unwrap_or_default();
    let answer = answer.unwrap_or_else(|e| {
        panic!(
            "1 MB upload from a to {FAR} across the 1280-byte hop: {e:#}\n\
             a's route: {route}\ndrops = {:?}",
            bed.drops()
        )
    });
    assert_eq!(join(server).expect("far server"), LEN);
    assert_eq!(answer.trim(), LEN.to_string());
    assert!(
        route.contains("mtu 1280"),
        "a's route to {FAR} has no learned path MTU 1280 (Packet Too Big did not reach the \
         container?): {route}"
    );
}
