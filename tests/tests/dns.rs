//! Embedded DNS (issue 7) with real queries from container netns: `dig`
//! (Debian's dnsutils) and raw UDP/TCP sockets. Upstream forwarding goes to
//! a small hickory-based DNS server the test runs in a "world" netns, linked
//! to the bed's host netns by a veth pair.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use netd_tests::cmd::{ip_ns, run_timeout};
use netd_tests::netns::{join, spawn_in};
use netd_tests::{Bed, Ctr};

/// The world's DNS server, and the host side of the link to it.
const WORLD_DNS: &str = "10.253.0.2";
const HOST_SIDE: &str = "10.253.0.1";
/// What the world's server answers for every `*.world.test`.
const WORLD_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// Where a container on a user network asks (inside its own netns).
const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// A `dig` answer: the status and the A records.
#[derive(Debug)]
struct Dig {
    status: String,
    addrs: Vec<Ipv4Addr>,
    out: String,
}

/// `dig @server name type` from netns `ns` (1 s, one try; `extra` flags).
fn dig_with(ns: &str, server: Ipv4Addr, name: &str, qtype: &str, extra: &[&str]) -> Dig {
    let at = format!("@{server}");
    let mut args = vec![
        "netns",
        "exec",
        ns,
        "dig",
        &at,
        name,
        qtype,
        "+time=1",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
    ];
    args.extend_from_slice(extra);
    let out = run_timeout("ip", &args, Duration::from_secs(10));
    let text = format!("{out}");
    let status = out
        .stdout
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .map(str::to_string)
        .unwrap_or_else(|| "NO-ANSWER".to_string());
    let addrs = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 5 && w[3] == "A")
                .then(|| w[4].parse().ok())
                .flatten()
        })
        .collect();
    Dig {
        status,
        addrs,
        out: text,
    }
}

fn dig(ns: &str, server: Ipv4Addr, name: &str) -> Dig {
    dig_with(ns, server, name, "A", &[])
}

/// Asserts that `name` resolves to exactly `want` (any order).
fn resolves(c: &Ctr, server: Ipv4Addr, name: &str, want: &[Ipv4Addr]) {
    let d = dig(&c.ns, server, name);
    let mut got = d.addrs.clone();
    got.sort();
    let mut want = want.to_vec();
    want.sort();
    assert!(
        d.status == "NOERROR" && got == want,
        "{} asking {server} for {name}: expected NOERROR {want:?}, got {} {got:?}\n{}",
        c.name,
        d.status,
        d.out
    );
}

/// Asserts that nothing answers `name` (dig times out: a dropped query).
fn times_out(c: &Ctr, server: Ipv4Addr, name: &str) {
    let d = dig(&c.ns, server, name);
    assert!(
        d.status == "NO-ANSWER" && d.out.contains("timed out"),
        "{} asking {server} for {name}: expected no answer (dropped), got {}\n{}",
        c.name,
        d.status,
        d.out
    );
}

/// Asserts that nothing listens on 127.0.0.11:53 in netns `ns` (the query
/// is refused by the kernel: port unreachable), within a second or so (a
/// listener being stopped closes its sockets a moment later).
fn no_listener(ns: &str, what: &str) {
    let mut d = dig(ns, RESOLVER, "anything");
    for _ in 0..10 {
        if d.status == "NO-ANSWER" && d.out.contains("refused") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
        d = dig(ns, RESOLVER, "anything");
    }
    panic!("{what}:\n{}", d.out);
}

/// Asserts an NXDOMAIN with no address for `name`.
fn nxdomain(c: &Ctr, server: Ipv4Addr, name: &str) {
    let d = dig(&c.ns, server, name);
    assert!(
        d.status == "NXDOMAIN" && d.addrs.is_empty(),
        "{} asking {server} for {name}: expected NXDOMAIN, got {} {:?}\n{}",
        c.name,
        d.status,
        d.addrs,
        d.out
    );
}

/// The `dns` object of `netd status`.
fn dns_stats(bed: &Bed) -> serde_json::Value {
    bed.json(&["status", "--format", "json"])["dns"].clone()
}

/// A DNS server in a netns of its own, reachable from the bed's host netns
/// at `WORLD_DNS`: answers `*.world.test` with `WORLD_ANSWER`, anything else
/// NXDOMAIN, and counts and logs (by name) what it gets. Stopped (and
/// joined) on drop.
struct World {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    /// The question names asked, lower case, fully qualified (`b.`).
    log: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl World {
    fn new(bed: &Bed) -> World {
        let ns = bed.new_netns("world");
        let host = bed.host_ns();
        let ip = |ns: &str, args: &[&str]| ip_ns(ns, args).unwrap_or_else(|e| panic!("{e:#}"));
        ip(
            host,
            &[
                "link", "add", "dnsw0", "type", "veth", "peer", "name", "dnsw1", "netns", &ns,
            ],
        );
        ip(
            host,
            &["addr", "add", &format!("{HOST_SIDE}/24"), "dev", "dnsw0"],
        );
        ip(host, &["link", "set", "dnsw0", "up"]);
        ip(
            &ns,
            &["addr", "add", &format!("{WORLD_DNS}/24"), "dev", "dnsw1"],
        );
        ip(&ns, &["link", "set", "dnsw1", "up"]);
        ip(&ns, &["link", "set", "lo", "up"]);
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (s, q, l) = (stop.clone(), queries.clone(), log.clone());
        let thread = spawn_in(&ns, move || {
            let sock = UdpSocket::bind((WORLD_DNS, 53))?;
            sock.set_read_timeout(Some(Duration::from_millis(100)))?;
            let _ = tx.send(());
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let (n, peer) = match sock.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        continue
                    }
                    Err(e) => return Err(e.into()),
                };
                q.fetch_add(1, Ordering::Relaxed);
                if let Some(name) = question_name(&buf[..n]) {
                    l.lock().unwrap().push(name);
                }
                if let Some(reply) = world_answer(&buf[..n]) {
                    sock.send_to(&reply, peer)?;
                }
            }
            Ok(())
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("world DNS server did not start");
        World {
            stop,
            queries,
            log,
            thread: Some(thread),
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    /// Every name asked so far (in order, lower case, with the final dot).
    fn asked(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Whether `name` (any case, with or without the final dot) was asked.
    fn was_asked(&self, name: &str) -> bool {
        let want = format!("{}.", name.trim_end_matches('.').to_ascii_lowercase());
        self.asked().contains(&want)
    }
}

/// The first question's name of a DNS message, lower case.
fn question_name(bytes: &[u8]) -> Option<String> {
    let m = Message::from_vec(bytes).ok()?;
    Some(m.queries.first()?.name().to_ascii().to_ascii_lowercase())
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if let Err(e) = join(t) {
                eprintln!("world DNS server: {e:#}");
            }
        }
    }
}

fn world_answer(bytes: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(bytes).ok()?;
    let q = req.queries.first()?.clone();
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    if req.edns.is_some() {
        resp.set_edns(Edns::new());
    }
    let name = q.name().to_ascii().to_ascii_lowercase();
    if name.ends_with(".world.test.") {
        if q.query_type() == RecordType::A {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A(WORLD_ANSWER)),
            ));
        }
    } else {
        resp.metadata.response_code = ResponseCode::NXDomain;
    }
    resp.to_vec().ok()
}

fn upstream_args() -> [&'static str; 2] {
    ["--dns-upstream", WORLD_DNS]
}

#[test]
fn names_and_aliases_on_a_user_network() {
    let bed = Bed::with_daemon_args(&upstream_args());
    bed.network("front", &["--subnet", "10.93.1.0/24"]);
    let gw = bed.gateway("front");
    let web = bed.container("web", &["--network", "front", "--alias", "www"]);
    let api = bed.container("api", &["--network", "front", "--alias", "svc"]);
    let api2 = bed.container("api2", &["--network", "front", "--alias", "svc"]);
    let (web_ip, api_ip, api2_ip) = (
        bed.ip(&web, "front"),
        bed.ip(&api, "front"),
        bed.ip(&api2, "front"),
    );
    resolves(&web, RESOLVER, "api", &[api_ip]);
    resolves(&api, RESOLVER, "web", &[web_ip]);
    resolves(&api, RESOLVER, "www", &[web_ip]);
    resolves(&web, RESOLVER, "web", &[web_ip]);
    // Case does not matter; a fully qualified name is the same name.
    resolves(&web, RESOLVER, "API", &[api_ip]);
    resolves(&web, RESOLVER, "Www.", &[web_ip]);
    // A shared alias gives every address.
    resolves(&web, RESOLVER, "svc", &[api_ip, api2_ip]);
    // The name exists without IPv6: NOERROR, no record (not NXDOMAIN).
    let d = dig_with(&web.ns, RESOLVER, "api", "AAAA", &[]);
    assert!(
        d.status == "NOERROR" && d.addrs.is_empty(),
        "AAAA api:\n{}",
        d.out
    );
    // TCP too.
    let d = dig_with(&web.ns, RESOLVER, "api", "A", &["+tcp"]);
    assert_eq!(d.addrs, vec![api_ip], "over TCP:\n{}", d.out);
    // Reverse lookup of a neighbour.
    let rev = format!("{api_ip}");
    let out = run_timeout(
        "ip",
        &[
            "netns",
            "exec",
            &web.ns,
            "dig",
            &format!("@{RESOLVER}"),
            "-x",
            &rev,
            "+short",
            "+time=1",
            "+tries=1",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.stdout.trim(), "api.", "reverse lookup:\n{out}");

    // What the runtime is told.
    let info = bed.ctr_info("web");
    assert_eq!(
        info["Dns"],
        serde_json::json!([RESOLVER.to_string()]),
        "inspect Dns: {info}"
    );
    let conf = bed.ok(&["container", "resolv-conf", "web"]);
    assert!(
        conf.contains(&format!("nameserver {RESOLVER}\n")) && conf.ends_with("options ndots:0"),
        "resolv-conf:\n{conf}"
    );
    assert!(
        !conf.contains(WORLD_DNS) && !conf.contains(&format!("{gw}\n")),
        "resolv-conf:\n{conf}"
    );
    let err = bed.fail(&["container", "resolv-conf", "nope"]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn other_networks_are_invisible() {
    let bed = Bed::with_daemon_args(&upstream_args());
    let world = World::new(&bed);
    bed.network("a", &["--subnet", "10.93.1.0/24"]);
    bed.network("b", &["--subnet", "10.93.2.0/24"]);
    let (gw_a, gw_b) = (bed.gateway("a"), bed.gateway("b"));
    let x = bed.container("x", &["--network", "a", "--alias", "xa"]);
    let y = bed.container("y", &["--network", "b"]);
    let z = bed.container("z", &["--network", "a"]);
    bed.ok(&["network", "connect", "--alias", "zb", "b", "z"]);
    let (x_ip, y_ip) = (bed.ip(&x, "a"), bed.ip(&y, "b"));
    let (z_a, z_b) = (bed.ip(&z, "a"), bed.ip(&z, "b"));

    resolves(&x, RESOLVER, "z", &[z_a]);
    nxdomain(&x, RESOLVER, "y");
    nxdomain(&x, RESOLVER, "zb");
    nxdomain(&y, RESOLVER, "x");
    nxdomain(&y, RESOLVER, "xa");
    // On a gateway, the asker is who the source address says, whichever
    // gateway it asks (when the host lets it reach them).
    if bed.firewall().drops_input() {
        times_out(&y, gw_a, "x");
        times_out(&x, gw_b, "y");
    } else {
        nxdomain(&y, gw_a, "x");
        nxdomain(&x, gw_b, "y");
    }
    // Names of other networks never reach the upstream ...
    assert_eq!(
        world.queries(),
        0,
        "hidden names were forwarded: {:?}",
        world.asked()
    );
    // ... while the upstream is there for names nobody here knows.
    resolves(&x, RESOLVER, "host.world.test", &[WORLD_ANSWER]);
    assert_eq!(world.asked(), vec!["host.world.test.".to_string()]);
    // z, on both, resolves names from both, with its own address per network.
    resolves(&z, RESOLVER, "x", &[x_ip]);
    resolves(&z, RESOLVER, "y", &[y_ip]);
    resolves(&z, RESOLVER, "y", &[y_ip]);
    // Its own name through 127.0.0.11: its address on its first network;
    // through b's gateway, its address on b.
    resolves(&z, RESOLVER, "z", &[z_a]);
    if !bed.firewall().drops_input() {
        resolves(&z, gw_b, "z", &[z_b]);
    }
    resolves(&y, RESOLVER, "zb", &[z_b]);
    let info = bed.ctr_info("z");
    assert_eq!(
        info["Dns"],
        serde_json::json!([RESOLVER.to_string()]),
        "{info}"
    );
}

#[test]
fn the_default_bridge_has_no_name_service() {
    let bed = Bed::with_daemon_args(&upstream_args());
    let gw = bed.gateway("bridge");
    let c1 = bed.container("c1", &[]);
    let c2 = bed.container("c2", &[]);
    let _ = bed.ip(&c2, "bridge");
    for server in [gw, RESOLVER] {
        let d = dig(&c1.ns, server, "c2");
        assert!(
            d.status == "NO-ANSWER" && d.addrs.is_empty(),
            "nothing should answer on {server} for a container on the default bridge:\n{}",
            d.out
        );
    }
    // Not because c1 cannot reach them: a datagram to port 53 gets "port
    // unreachable" back, from c1's own stack for 127.0.0.11 and from the
    // host for the gateway (unless the host's firewall drops INPUT: then
    // its INPUT drop count shows that c1's packets got there).
    refused_at(&c1.ns, RESOLVER, 53).unwrap_or_else(|e| panic!("control c1 -> {RESOLVER}:53: {e}"));
    if bed.firewall().drops_input() {
        bed.ping_host(&c1.ns, gw)
            .unwrap_or_else(|e| panic!("control c1 -> {gw}: {e:#}"));
    } else {
        refused_at(&c1.ns, gw, 53).unwrap_or_else(|e| panic!("control c1 -> {gw}:53: {e}"));
    }
    // Its containers are told to use the upstreams, not the gateway.
    let info = bed.ctr_info("c1");
    assert_eq!(info["Dns"], serde_json::json!([WORLD_DNS]), "{info}");
    let conf = bed.ok(&["container", "resolv-conf", "c1"]);
    assert!(
        conf.contains(&format!("nameserver {WORLD_DNS}\n")) && !conf.contains(&gw.to_string()),
        "{conf}"
    );
    // A user network next to it is served, and does not see c2 either.
    bed.network("user", &["--subnet", "10.93.3.0/24"]);
    let u = bed.container("u", &["--network", "user"]);
    nxdomain_or_forwarded_nx(&u, RESOLVER, "c2");
}

/// A datagram from `ns` to `ip:port` reaches the host and nothing listens
/// there: the host's ICMP port unreachable turns into ECONNREFUSED on a
/// connected socket (a timeout would mean it did not get there at all).
fn refused_at(ns: &str, ip: Ipv4Addr, port: u16) -> Result<(), String> {
    join(spawn_in(ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect((ip, port))?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 512];
        let mut last = String::new();
        for _ in 0..3 {
            sock.send(&a_query(9, "c2."))?;
            match sock.recv(&mut buf) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(()),
                Err(e) => last = format!("{e}"),
                Ok(n) => anyhow::bail!("got an answer of {n} bytes"),
            }
        }
        anyhow::bail!("no port unreachable from {ip}:{port} ({last})")
    }))
    .map_err(|e| format!("{e:#}"))
}

/// c2 is on the default bridge only: netd does not know the name, so it is
/// forwarded, and the world says NXDOMAIN.
fn nxdomain_or_forwarded_nx(c: &Ctr, server: Ipv4Addr, name: &str) {
    let d = dig(&c.ns, server, name);
    assert!(
        d.addrs.is_empty() && (d.status == "NXDOMAIN" || d.status == "SERVFAIL"),
        "{}",
        d.out
    );
}

/// 127.0.0.11:53 inside each container's netns (UDP and TCP), whatever the
/// host's firewall does; the gateway keeps answering where the host lets
/// containers reach it, and is dropped by a host INPUT policy of DROP.
#[test]
fn each_container_is_answered_inside_its_own_netns() {
    let bed = Bed::with_daemon_args(&upstream_args());
    let world = World::new(&bed);
    bed.network("n", &["--subnet", "10.93.1.0/24"]);
    bed.network("m", &["--subnet", "10.93.2.0/24"]);
    let gw = bed.gateway("n");
    let a = bed.container("alpha", &["--network", "n"]);
    let b = bed.container("b", &["--network", "n", "--alias", "bee"]);
    let _hidden = bed.container("hidden", &["--network", "m"]);
    let b_ip = bed.ip(&b, "n");
    resolves(&a, RESOLVER, "b", &[b_ip]);
    resolves(&b, RESOLVER, "alpha", &[bed.ip(&a, "n")]);
    let d = dig_with(&a.ns, RESOLVER, "bee", "A", &["+tcp"]);
    assert_eq!(d.addrs, vec![b_ip], "over TCP:\n{}", d.out);
    // Another network's name is still hidden, and never forwarded ...
    nxdomain(&a, RESOLVER, "hidden");
    assert_eq!(world.queries(), 0, "a hidden name was forwarded");
    // ... while other names are, from the host netns.
    resolves(&a, RESOLVER, "host.world.test", &[WORLD_ANSWER]);
    assert_eq!(world.queries(), 1);
    // The gateway: as before on a permissive host; behind the host's INPUT
    // chain on a hostile one (the witness that 127.0.0.11 is what works).
    if bed.firewall().drops_input() {
        times_out(&a, gw, "b");
    } else {
        resolves(&a, gw, "b", &[b_ip]);
        nxdomain(&a, gw, "hidden");
    }
    // The sockets are in the containers, not the host.
    no_listener(bed.host_ns(), "the host netns should have no 127.0.0.11:53");
    let listeners = |bed: &Bed| dns_stats(bed)["container_listeners_bound"].as_u64();
    assert_eq!(listeners(&bed), Some(3), "{}", dns_stats(&bed));

    // container:OTHER shares OTHER's netns and its listener.
    let side = bed.container("side", &["--network", "container:alpha"]);
    assert_eq!(listeners(&bed), Some(3), "{}", dns_stats(&bed));
    let info = bed.ctr_info(&side.name);
    assert_eq!(
        info["Dns"],
        serde_json::json!([RESOLVER.to_string()]),
        "{info}"
    );

    // Recreated at restart, after SIGTERM and after SIGKILL.
    bed.stop_agent();
    bed.start_agent();
    resolves(&a, RESOLVER, "b", &[b_ip]);
    bed.kill_agent();
    bed.start_agent();
    resolves(&a, RESOLVER, "bee", &[b_ip]);
    assert_eq!(listeners(&bed), Some(3), "{}", dns_stats(&bed));

    // Removed with the container (and with the last user network).
    bed.ok(&["container", "rm", "b"]);
    no_listener(&b.ns, "b's listener should be gone with b");
    bed.ok(&["network", "connect", "bridge", "alpha"]);
    bed.ok(&["network", "disconnect", "n", "alpha"]);
    no_listener(&a.ns, "alpha is on the default bridge only: no listener");
    assert_eq!(listeners(&bed), Some(1), "{}", dns_stats(&bed));
}

#[test]
fn names_change_at_once() {
    let bed = Bed::with_daemon_args(&upstream_args());
    let world = World::new(&bed);
    bed.network("n", &["--subnet", "10.93.1.0/24"]);
    bed.network("m", &["--subnet", "10.93.2.0/24"]);
    let gw = bed.gateway("n");
    let a = bed.container("a", &["--network", "n"]);
    let b = bed.container("b", &["--network", "n", "--alias", "bee"]);
    let b_ip = bed.ip(&b, "n");
    resolves(&a, RESOLVER, "b", &[b_ip]);
    // b stays known (on m), so its name is hidden, not forwarded; its
    // alias was on n only, so nobody knows it any more (the world says
    // NXDOMAIN).
    bed.ok(&["network", "connect", "m", "b"]);
    bed.ok(&["network", "disconnect", "n", "b"]);
    nxdomain(&a, RESOLVER, "b");
    nxdomain(&a, RESOLVER, "bee");
    // The world's log tells the two apart: "bee" went upstream (so the
    // log sees what is forwarded), "b" did not.
    assert!(
        world.was_asked("bee"),
        "the unknown alias should have been forwarded; the world saw {:?}",
        world.asked()
    );
    assert!(
        !world.was_asked("b"),
        "b is on m, hidden from n: its name must not be forwarded; the world saw {:?}",
        world.asked()
    );
    // Back again, with a new alias only.
    bed.ok(&["network", "connect", "--alias", "bee2", "n", "b"]);
    let b_ip = bed.ip(&b, "n");
    resolves(&a, RESOLVER, "b", &[b_ip]);
    resolves(&a, RESOLVER, "bee2", &[b_ip]);
    // A new container resolves as soon as it is added.
    let c = bed.container("c", &["--network", "n"]);
    resolves(&a, RESOLVER, "c", &[bed.ip(&c, "n")]);
    // Removing a network stops its listener; a new one starts serving.
    bed.ok(&["container", "rm", "c"]);
    bed.ok(&["network", "disconnect", "n", "b"]);
    bed.ok(&["container", "rm", "a"]);
    bed.ok(&["network", "rm", "n"]);
    bed.network("n2", &["--subnet", "10.93.1.0/24"]);
    assert_eq!(bed.gateway("n2"), gw);
    let d = bed.container("d", &["--network", "n2"]);
    let e = bed.container("e", &["--network", "n2"]);
    resolves(&d, RESOLVER, "e", &[bed.ip(&e, "n2")]);
}

#[test]
fn forwards_to_the_upstream() {
    let bed = Bed::with_daemon_args(&upstream_args());
    let world = World::new(&bed);
    bed.network("n", &["--subnet", "10.93.1.0/24"]);
    bed.network("priv", &["--subnet", "10.93.9.0/24", "--internal"]);
    let c = bed.container("c", &["--network", "n"]);
    resolves(&c, RESOLVER, "host.world.test", &[WORLD_ANSWER]);
    resolves(&c, RESOLVER, "Deep.Host.World.Test.", &[WORLD_ANSWER]);
    let d = dig_with(&c.ns, RESOLVER, "host.world.test", "A", &["+tcp"]);
    assert_eq!(d.addrs, vec![WORLD_ANSWER], "client over TCP:\n{}", d.out);
    nxdomain(&c, RESOLVER, "nowhere.example");
    let before = world.queries();
    assert!(before >= 4, "the world saw {before} queries");

    // An internal network resolves its own names and forwards nothing.
    let p = bed.container("p", &["--network", "priv"]);
    let q = bed.container("q", &["--network", "priv"]);
    resolves(&p, RESOLVER, "q", &[bed.ip(&q, "priv")]);
    let d = dig(&p.ns, RESOLVER, "host.world.test");
    assert!(
        d.status == "REFUSED" && d.addrs.is_empty(),
        "internal network forwarded:\n{}",
        d.out
    );
    assert_eq!(
        world.queries(),
        before,
        "an internal network's query reached the world"
    );
    let stats = dns_stats(&bed);
    assert!(stats["forwarded"].as_u64().unwrap_or(0) >= 4, "{stats}");
}

#[test]
fn a_dead_upstream_gives_servfail() {
    // Nothing listens on port 5300 in the world netns.
    let bed = Bed::with_daemon_args(&["--dns-upstream", "10.253.0.2:5300"]);
    let _world = World::new(&bed);
    bed.network("n", &["--subnet", "10.93.1.0/24"]);
    let c = bed.container("c", &["--network", "n"]);
    let other = bed.container("other", &["--network", "n"]);
    let t0 = Instant::now();
    let d = dig_with(&c.ns, RESOLVER, "host.world.test", "A", &["+time=4"]);
    assert_eq!(d.status, "SERVFAIL", "{}", d.out);
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t0.elapsed()
    );
    // Local names still work.
    resolves(&c, RESOLVER, "other", &[bed.ip(&other, "n")]);
}

#[test]
fn a_silent_upstream_times_out_into_servfail() {
    // On the world link, where nobody has that address: no reply ever.
    let bed = Bed::with_daemon_args(&["--dns-upstream", "10.253.0.9"]);
    let _world = World::new(&bed);
    bed.network("n", &["--subnet", "10.93.1.0/24"]);
    let c = bed.container("c", &["--network", "n"]);
    let t0 = Instant::now();
    let d = dig_with(&c.ns, RESOLVER, "host.world.test", "A", &["+time=5"]);
    let took = t0.elapsed();
    assert_eq!(d.status, "SERVFAIL", "{}", d.out);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "SERVFAIL after {took:?}, expected about 2 s"
    );
}

/// Sends `payload` over UDP from `ns` to `server`:53; returns the reply, if
/// any arrives within 1 s.
fn udp_exchange(ns: &str, server: Ipv4Addr, payloads: Vec<Vec<u8>>) -> Vec<Option<Vec<u8>>> {
    join(spawn_in(ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut out = Vec::new();
        for p in payloads {
            sock.send_to(&p, (server, 53))?;
            let mut buf = [0u8; 4096];
            out.push(match sock.recv(&mut buf) {
                Ok(n) => Some(buf[..n].to_vec()),
                Err(_) => None,
            });
        }
        Ok(out)
    }))
    .unwrap_or_else(|e| panic!("{e:#}"))
}

fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

#[test]
fn malformed_queries_are_refused_without_harm() {
    let bed = Bed::with_daemon_args(&upstream_args());
    bed.network("n", &["--subnet", "10.93.1.0/24"]);
    let c = bed.container("c", &["--network", "n"]);
    let other = bed.container("other", &["--network", "n"]);
    let other_ip = bed.ip(&other, "n");

    let mut truncated = a_query(0xbeef, "other.");
    truncated.truncate(15);
    let mut response = a_query(0x1111, "other.");
    response[2] |= 0x80;
    let mut oversized = a_query(0x2222, "other.");
    oversized.resize(6000, 0x41);
    let mut junk_count = a_query(0x3333, "other.");
    junk_count[4] = 0xff; // 65280+ questions promised
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
    let replies = udp_exchange(
        &c.ns,
        RESOLVER,
        vec![
            vec![],
            vec![0x42],
            vec![0; 11],
            truncated,
            response,
            oversized,
            junk_count,
            garbage,
            a_query(0x4444, "OTHER."),
        ],
    );
    let rcode = |r: &Option<Vec<u8>>| {
        r.as_ref()
            .map(|b| (u16::from_be_bytes([b[0], b[1]]), b[3] & 0x0f))
    };
    assert_eq!(replies[0], None, "empty datagram");
    assert_eq!(replies[1], None, "one byte");
    assert_eq!(replies[2], None, "shorter than a header");
    assert_eq!(rcode(&replies[3]), Some((0xbeef, 1)), "truncated: FORMERR");
    assert_eq!(replies[4], None, "a response is never answered");
    assert_eq!(rcode(&replies[5]), Some((0x2222, 1)), "oversized: FORMERR");
    assert_eq!(
        rcode(&replies[6]).map(|r| r.1),
        Some(1),
        "bad counts: FORMERR"
    );
    // Garbage: FORMERR or nothing, but never an answer.
    if let Some(r) = &replies[7] {
        assert!(r.len() >= 12 && r[3] & 0x0f != 0, "garbage got {r:?}");
    }
    // The service is still fine: a proper query over the same socket...
    let ok = Message::from_vec(replies[8].as_ref().expect("no answer after garbage")).unwrap();
    assert_eq!(ok.metadata.id, 0x4444);
    assert_eq!(ok.answers.len(), 1);
    assert_eq!(ok.answers[0].data, RData::A(A(other_ip)));

    // TCP: a length that never comes, then a connection that just closes.
    let gw_sa = SocketAddr::from((RESOLVER, 53));
    join(spawn_in(&c.ns, move || {
        let mut s = TcpStream::connect_timeout(&gw_sa, Duration::from_secs(2))?;
        s.write_all(&[0xff, 0xff, 1, 2, 3])?;
        drop(s);
        let mut s = TcpStream::connect_timeout(&gw_sa, Duration::from_secs(2))?;
        s.write_all(&[0x00, 0x05, 1, 2, 3, 4, 5])?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Ok(())
    }))
    .unwrap_or_else(|e| panic!("{e:#}"));

    // ...and dig from another container.
    resolves(&other, RESOLVER, "c", &[bed.ip(&c, "n")]);
    let stats = dns_stats(&bed);
    assert!(stats["malformed"].as_u64().unwrap_or(0) >= 3, "{stats}");
}

#[test]
fn a_flood_from_one_container_does_not_starve_another() {
    let bed = Bed::with_daemon_args(&upstream_args());
    bed.network("n", &["--subnet", "10.93.1.0/24"]);
    let flooder = bed.container("flooder", &["--network", "n"]);
    let victim = bed.container("victim", &["--network", "n"]);
    let flooder_ip = bed.ip(&flooder, "n");

    // About 20 000 queries a second for 2 s: a hundred times the limit.
    // `flooding` is true from the first query sent to the last.
    let flooding = Arc::new(AtomicBool::new(false));
    let fl = flooding.clone();
    let flood = spawn_in(&flooder.ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect((RESOLVER, 53))?;
        sock.set_nonblocking(true)?;
        let q = a_query(7, "victim.");
        let mut buf = [0u8; 512];
        let (mut sent, mut answered) = (0usize, 0usize);
        let t0 = Instant::now();
        fl.store(true, Ordering::SeqCst);
        while t0.elapsed() < Duration::from_secs(2) {
            for _ in 0..20 {
                if sock.send(&q).is_ok() {
                    sent += 1;
                }
            }
            while sock.recv(&mut buf).is_ok() {
                answered += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = t0.elapsed();
        fl.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match sock.recv(&mut buf) {
                Ok(_) => answered += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        Ok((sent, answered, took))
    });
    std::thread::sleep(Duration::from_millis(200));
    // The victim keeps being answered during the flood: an answer counts
    // only when the flood was running before the query and still after
    // the answer, and the agent was limiting it by then.
    let limited_before = dns_stats(&bed)["rate_limited"].as_u64().unwrap_or(0);
    let (mut ok, mut overlapped) = (0, 0);
    for _ in 0..5 {
        let during = flooding.load(Ordering::SeqCst);
        let d = dig(&victim.ns, RESOLVER, "flooder");
        if !(during && flooding.load(Ordering::SeqCst)) {
            continue;
        }
        overlapped += 1;
        if d.addrs == vec![flooder_ip] {
            ok += 1;
        }
    }
    let limited_during = dns_stats(&bed)["rate_limited"].as_u64().unwrap_or(0);
    let still_flooding = flooding.load(Ordering::SeqCst);
    let (sent, answered, took) = join(flood).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "flood: {sent} queries in {took:?}, {answered} answered; victim {ok}/{overlapped} \
         during the flood; rate_limited {limited_before} -> {limited_during}"
    );
    assert!(
        overlapped == 5 && ok >= 4,
        "the victim got {ok} answers to {overlapped} of its 5 queries that ran wholly \
         during the flood"
    );
    assert!(
        still_flooding && limited_during > limited_before,
        "the flood should have been running and rate limited while the victim asked: \
         flooding at the end {still_flooding}, rate_limited {limited_before} -> {limited_during}"
    );
    // 400 burst + 200/s: far fewer answers than queries. (A loaded
    // machine sends fewer than 20 000 a second; four times what the limit
    // lets through is still a flood.)
    let bound = 400.0 + 200.0 * (took.as_secs_f64() + 1.0) + 50.0;
    assert!(
        sent as f64 > 4.0 * bound && answered > 0 && (answered as f64) < bound,
        "flooder got {answered} answers for {sent} queries in {took:?} (bound {bound})"
    );
    let stats = dns_stats(&bed);
    assert!(stats["rate_limited"].as_u64().unwrap_or(0) > 0, "{stats}");
    // The flooder recovers once it slows down.
    std::thread::sleep(Duration::from_millis(500));
    resolves(&flooder, RESOLVER, "victim", &[bed.ip(&victim, "n")]);
}
