//! `netd-cni` (issue 12) driven exactly as runtimes drive it: the
//! environment and stdin of podman 4.3 (CNI backend) and containerd 1.6
//! (`ctr run --cni`), results and errors on stdout, real packets after ADD
//! and a clean kernel after DEL. Real runtimes are in `cni_runtimes.rs`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use netd_tests::cmd::ip_ns;
use netd_tests::cni::{call, conf, plain_env, tcp_via, udp_via, with_runtime_config, Attachment};
use netd_tests::netns::{path_of, spawn_in};
use netd_tests::ports::{PortServer, P};
use netd_tests::traffic::{allow, dropped, icmp, tcp, Ep};
use netd_tests::world::{at4, at6, world_reaches, UPLINK, UPLINK6, WORLD};
use netd_tests::{blocked_both, reach_both, Bed};
use serde_json::{json, Value};

/// A podman-style network config whose network is created on first use.
fn web_conf(bed: &Bed, version: &str) -> Value {
    conf(
        version,
        "web",
        &bed.socket(),
        json!({"subnet": "10.88.0.0/24", "capabilities": {"portMappings": true, "aliases": true}}),
    )
}

/// A bed whose host has an uplink to a world netns, agent running.
fn world_bed() -> (Bed, String) {
    Bed::with_world(&[])
}

/// The first address of an ADD result (IPv6 on an IPv6-only network).
fn ep_of(result: &Value, ns: &str, name: &str) -> Ep {
    let addr = result["ips"][0]["address"].as_str().expect("address");
    let ip: std::net::IpAddr = addr.split('/').next().unwrap().parse().unwrap();
    Ep::at(name, ns, ip)
}

/// The IPv6 address of an ADD result (its second `ips` entry).
fn ep6_of(result: &Value, ns: &str, name: &str) -> Ep {
    let addr = result["ips"][1]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no IPv6 address in {result}"));
    let ip: std::net::Ipv6Addr = addr.split('/').next().unwrap().parse().unwrap();
    Ep::v6(name, ns, ip)
}

fn cni_containers(bed: &Bed) -> Vec<String> {
    let v = bed.json(&["container", "ls", "--format", "json"]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap().to_string())
        .collect()
}

/// A TCP socket bound to `port` on every address and listening; with
/// `reuse`, as Go's listeners (conmon) do: SO_REUSEADDR.
fn listen_on(port: u16, reuse: bool) -> anyhow::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::*;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if reuse {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
    )?;
    listen(&fd, Backlog::new(8)?)?;
    Ok(fd)
}

/// Can a host process listen on `port` (see [`listen_on`])?
fn host_bind(bed: &Bed, port: u16, reuse: bool) -> anyhow::Result<()> {
    netd_tests::netns::join(spawn_in(bed.host_ns(), move || {
        listen_on(port, reuse).map(drop)
    }))
}

#[test]
fn version_answers_like_podman_expects() {
    let out = call(&plain_env("VERSION"), r#"{"cniVersion":"1.0.0"}"#).ok();
    assert_eq!(out["cniVersion"], "1.0.0");
    assert_eq!(out["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    let out = call(&plain_env("VERSION"), "").ok();
    assert_eq!(out["cniVersion"], "1.1.0");
}

/// podman's ADD (runtimeConfig with aliases and a port mapping), the
/// result's shape, real packets within the network and from the world to
/// the published port (client address kept), CHECK, a broken kernel state
/// found by CHECK, DEL leaving the host as it was, DEL again.
#[test]
fn podman_add_check_del() {
    let (bed, world) = world_bed();
    let links_before = bed.host_links();
    let a_ns = bed.new_netns("a");
    let b_ns = bed.new_netns("b");
    let a = Attachment::podman("alpha", &path_of(&a_ns), "eth0");
    let b = Attachment::podman("beta", &path_of(&b_ns), "eth0");
    for version in ["0.4.0", "1.0.0"] {
        let c = web_conf(&bed, version);
        assert!(call(&plain_env("VERSION"), &c.to_string()).success());
    }
    let conf_a = with_runtime_config(
        web_conf(&bed, "1.0.0"),
        json!({"aliases": {"web": [&a.container_id[..12]]},
               "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}),
    );
    let ra = a.run("ADD", &conf_a.to_string()).ok();
    assert_eq!(ra["cniVersion"], "1.0.0");
    let ifs = ra["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2, "{ra}");
    assert!(
        ifs[0].get("sandbox").is_none(),
        "host end has no sandbox: {ra}"
    );
    assert_eq!(ifs[1]["name"], "eth0");
    assert_eq!(ifs[1]["sandbox"], a.netns.as_str());
    assert_eq!(ra["ips"][0]["interface"], 1);
    assert_eq!(ra["ips"][0]["gateway"], "10.88.0.1");
    assert!(ra["ips"][0]["address"].as_str().unwrap().ends_with("/24"));
    assert_eq!(
        ra["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}])
    );
    assert_eq!(ra["dns"]["nameservers"], json!(["127.0.0.11"]));
    let host_if = ifs[0]["name"].as_str().unwrap();
    assert!(
        bed.host_links().iter().any(|l| l == host_if),
        "{host_if} not on the host"
    );
    // The network was created on first use, and the container is named
    // after podman's K8S_POD_NAME.
    assert_eq!(
        bed.net_info("web")["IPAM"]["Config"][0]["Subnet"],
        "10.88.0.0/24"
    );
    let info = bed.ctr_info("alpha");
    assert_eq!(info["Origin"], "cni");
    assert_eq!(
        info["Networks"]["web"]["Aliases"],
        json!([&a.container_id[..12]])
    );
    let rb = b.run("ADD", &web_conf(&bed, "1.0.0").to_string()).ok();
    let (ea, eb) = (ep_of(&ra, &a_ns, "a"), ep_of(&rb, &b_ns, "b"));
    reach_both(&ea, &eb);
    icmp(&a_ns, eb.ip).unwrap();
    // W -> H:8080 reaches a:80 with the world's own address.
    let peer = tcp_via(&a_ns, 80, &world, SocketAddrV4::new(UPLINK, 8080)).unwrap();
    assert_eq!(peer, WORLD);
    // conmon's way: a SO_REUSEADDR listener on the published port works;
    // a plain bind does not.
    assert!(
        host_bind(&bed, 8080, false).is_err(),
        "plain bind on a published port"
    );
    host_bind(&bed, 8080, true).expect("a runtime may listen on its published port");

    assert!(a
        .run("CHECK", &with_prev(&conf_a, &ra).to_string())
        .success());
    ip_ns(&a_ns, &["addr", "flush", "dev", "eth0"]).unwrap();
    let (code, msg, details) = a.run("CHECK", &with_prev(&conf_a, &ra).to_string()).error();
    assert_eq!(code, 101, "{msg}");
    assert!(details.contains("lacks address"), "{details}");

    // DEL (with prevResult, as podman sends it), twice.
    a.run("DEL", &with_prev(&conf_a, &ra).to_string()).ok();
    a.run("DEL", &with_prev(&conf_a, &ra).to_string()).ok();
    b.run("DEL", &web_conf(&bed, "1.0.0").to_string()).ok();
    assert!(cni_containers(&bed).is_empty());
    let mut now = bed.host_links();
    now.retain(|l| !l.starts_with("br-"));
    assert_eq!(now, links_before, "DEL left interfaces behind");
    assert_eq!(Bed::links(&a_ns), vec!["lo".to_string()]);
    host_bind(&bed, 8080, false).expect("DEL frees the published port");
    let (code, _, _) = a.run("CHECK", &conf_a.to_string()).error();
    assert_eq!(code, 3, "CHECK after DEL: unknown container");
}

/// A runtime's environment for one call.
type Env = Vec<(String, String)>;

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// containerd's ADD (`/proc/PID/ns/net`, empty CNI_ARGS) and DEL with an
/// empty CNI_NETNS after the task is gone; GC keeps only the valid ones
/// and never touches containers netd-cni did not make.
#[test]
fn containerd_del_without_netns_and_gc() {
    let bed = Bed::new();
    bed.network("ctrnet", &["--subnet", "10.89.0.0/24"]);
    let c = |v: &str| conf(v, "ctrnet", &bed.socket(), json!({}));
    let mut holders = Vec::new();
    let mut atts = Vec::new();
    for name in ["one", "two", "three"] {
        let ns = bed.new_netns(name);
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", path_of(&ns).display()))
            .args(["sleep", "60"])
            .spawn()
            .unwrap();
        let proc_ns = std::path::PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        holders.push(child);
        let att = Attachment::containerd(name, &proc_ns);
        let r = att.run("ADD", &c("1.0.0").to_string()).ok();
        assert_eq!(r["interfaces"][1]["sandbox"], att.netns.as_str());
        atts.push((att, ns, r));
    }
    let plain = bed.container("plain", &["--network", "ctrnet"]);
    let (e1, e2) = (
        ep_of(&atts[0].2, &atts[0].1, "one"),
        ep_of(&atts[1].2, &atts[1].1, "two"),
    );
    tcp(&atts[0].1, &e2).unwrap();
    tcp(&atts[1].1, &e1).unwrap();
    // ctr: the task ends (its netns with it), then DEL with CNI_NETNS="".
    let _ = holders[0].kill();
    let _ = holders[0].wait();
    atts[0].0.run("DEL", &c("1.0.0").to_string()).ok();
    assert!(!cni_containers(&bed).contains(&"default-one".to_string()));
    let host_if = atts[0].2["interfaces"][0]["name"].as_str().unwrap();
    assert!(
        !bed.host_links().iter().any(|l| l == host_if),
        "{host_if} left behind"
    );
    // GC with only "two" valid: "three" goes, "two" and the CLI's stay.
    let mut gc = c("1.1.0");
    gc["cni.dev/valid-attachments"] =
        json!([{"containerID": atts[1].0.container_id, "ifname": "eth0"}]);
    call(&plain_env("GC"), &gc.to_string()).ok();
    let left = cni_containers(&bed);
    assert!(left.contains(&"default-two".to_string()), "{left:?}");
    assert!(!left.contains(&"default-three".to_string()), "{left:?}");
    assert!(left.contains(&plain.name), "{left:?}");
    assert_eq!(Bed::links(&atts[2].1), vec!["lo".to_string()]);
    tcp(&atts[1].1, &bed.ep(&plain, "ctrnet")).unwrap();
    // GC of an older config version is refused, and changes nothing.
    let mut old = c("1.0.0");
    old["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(call(&plain_env("GC"), &old.to_string()).error().0, 1);
    assert!(cni_containers(&bed).contains(&"default-two".to_string()));
    for mut h in holders {
        let _ = h.kill();
        let _ = h.wait();
    }
}

/// A second ADD on the same container with another CNI_IFNAME connects it
/// to a second network; DEL of that interface disconnects only it. Two CNI
/// networks are isolated from each other (witness: same-network traffic).
#[test]
fn second_network_connects_and_networks_are_isolated() {
    let bed = Bed::new();
    let n1 = conf(
        "1.1.0",
        "n1",
        &bed.socket(),
        json!({"subnet": "10.90.1.0/24"}),
    );
    let n2 = conf(
        "1.1.0",
        "n2",
        &bed.socket(),
        json!({"subnet": "10.90.2.0/24"}),
    );
    let (a_ns, b_ns, c_ns) = (bed.new_netns("a"), bed.new_netns("b"), bed.new_netns("c"));
    let a = Attachment::podman("a", &path_of(&a_ns), "eth0");
    let b = Attachment::podman("b", &path_of(&b_ns), "eth0");
    let c = Attachment::podman("c", &path_of(&c_ns), "eth0");
    let ra = a.run("ADD", &n1.to_string()).ok();
    let rb = b.run("ADD", &n2.to_string()).ok();
    let rc = c.run("ADD", &n1.to_string()).ok();
    let (ea, eb, ec) = (
        ep_of(&ra, &a_ns, "a"),
        ep_of(&rb, &b_ns, "b"),
        ep_of(&rc, &c_ns, "c"),
    );
    reach_both(&ea, &ec);
    blocked_both(&ea, &eb);
    // a joins n2 as eth1.
    let a1 = a.with_ifname("eth1");
    let ra1 = a1.run("ADD", &n2.to_string()).ok();
    assert_eq!(ra1["interfaces"][1]["name"], "eth1");
    assert_eq!(
        ra1["routes"],
        json!([]),
        "only the first network has the default route"
    );
    assert_eq!(ra1["interfaces"][1]["mtu"], 1500);
    let ea1 = ep_of(&ra1, &a_ns, "a/n2");
    reach_both(&ea1, &eb);
    assert!(a1.run("CHECK", &n2.to_string()).success());
    // ADD again answers the same attachment.
    let again = a1.run("ADD", &n2.to_string()).ok();
    assert_eq!(again["ips"], ra1["ips"]);
    a1.run("DEL", &n2.to_string()).ok();
    assert_eq!(
        Bed::links(&a_ns),
        vec!["eth0".to_string(), "lo".to_string()]
    );
    blocked_both(&ea, &eb);
    reach_both(&ea, &ec);
    // A DEL naming another network leaves the attachment alone.
    a.run("DEL", &n2.to_string()).ok();
    assert!(cni_containers(&bed).contains(&"a".to_string()));
    a.run("DEL", &n1.to_string()).ok();
    assert!(!cni_containers(&bed).contains(&"a".to_string()));
}

/// Dual-stack CNI networks (`ipv6`, `subnet6` in the config): the result
/// carries the IPv6 address and gateway (with `"version": "6"` in 0.4.0,
/// no version key in 1.0) and the `::/0` route, a static IPv6 address
/// from `runtimeConfig.ips` is honoured, the kernel has what the result
/// says, and IPv6 between CNI networks is dropped by netd.
///
/// Published ports over IPv6, as the reference portmap plugin: no hostIP
/// publishes on both families, `::` and an IPv6 hostIP on IPv6 only,
/// `0.0.0.0` on IPv4 only. The world reaches them over IPv6 with its own
/// address, and not over the other family. CHECK with prevResult compares
/// both families and finds the IPv6 ports. Then IPv6-only networks in the
/// same bed ([`ipv6_only_attachments`]).
#[test]
fn dual_stack_results_and_ipv6_isolation() {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world6();
    bed.start_agent();
    bed.wait_uplink(UPLINK, netd_tests::world::UPLINK_LIMIT);
    let n1 = conf(
        "1.0.0",
        "d1",
        &bed.socket(),
        json!({"subnet": "10.92.1.0/24", "ipv6": true, "subnet6": "fd00:92:1::/64"}),
    );
    let n2 = conf(
        "0.4.0",
        "d2",
        &bed.socket(),
        json!({"subnet": "10.92.2.0/24", "ipv6": true, "subnet6": "fd00:92:2::/64"}),
    );
    let (a_ns, b_ns, c_ns) = (bed.new_netns("a"), bed.new_netns("b"), bed.new_netns("c"));
    let a = Attachment::podman("a", &path_of(&a_ns), "eth0");
    let b = Attachment::podman("b", &path_of(&b_ns), "eth0");
    let c = Attachment::podman("c", &path_of(&c_ns), "eth0");
    let a_conf = with_runtime_config(n1.clone(), json!({"ips": ["fd00:92:1::50/64"]}));
    let ra = a.run("ADD", &a_conf.to_string()).ok();
    let rb = b.run("ADD", &n2.to_string()).ok();
    let c_conf = with_runtime_config(
        n1.clone(),
        json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8081, "containerPort": 81, "protocol": "tcp", "hostIP": "::"},
            {"hostPort": 8082, "containerPort": 82, "protocol": "udp", "hostIP": UPLINK6.to_string()},
            {"hostPort": 8083, "containerPort": 83, "protocol": "tcp", "hostIP": "0.0.0.0"},
        ]}),
    );
    let rc = c.run("ADD", &c_conf.to_string()).ok();
    assert_eq!(
        ra["ips"][1],
        json!({"address": "fd00:92:1::50/64", "gateway": "fd00:92:1::1", "interface": 1}),
        "{ra}"
    );
    assert_eq!(ra["ips"][0]["address"], "10.92.1.2/24", "{ra}");
    assert!(
        ra["routes"]
            .as_array()
            .unwrap()
            .contains(&json!({"dst": "::/0", "gw": "fd00:92:1::1"})),
        "{ra}"
    );
    assert_eq!(rb["ips"][0]["version"], "4", "{rb}");
    assert_eq!(rb["ips"][1]["version"], "6", "{rb}");
    assert_eq!(rb["ips"][1]["address"], "fd00:92:2::2/64", "{rb}");
    let addrs = ip_ns(
        &a_ns,
        &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"],
    )
    .unwrap();
    assert!(addrs.contains("fd00:92:1::50/64"), "{addrs}");
    let route = ip_ns(&a_ns, &["-6", "route", "show", "default"]).unwrap();
    assert!(route.contains("via fd00:92:1::1"), "{route}");
    let (ea, eb, ec) = (
        ep6_of(&ra, &a_ns, "a"),
        ep6_of(&rb, &b_ns, "b"),
        ep6_of(&rc, &c_ns, "c"),
    );
    bed.expect(&[
        allow(&ea, &ec),
        allow(&ec, &ea),
        dropped(&ea, &eb, "network-isolation"),
        dropped(&eb, &ea, "network-isolation"),
    ]);
    assert!(a.run("CHECK", &a_conf.to_string()).success());
    let check = a.run("CHECK", &with_prev(&a_conf, &ra).to_string());
    assert!(
        check.success(),
        "CHECK with a dual-stack prevResult: {check:?}"
    );
    published_over_ipv6(&bed, &world, &c_ns);
    // CHECK finds c's IPv6 ports in the datapath (PUBLISHED6).
    let check = c.run("CHECK", &with_prev(&c_conf, &rc).to_string());
    assert!(check.success(), "CHECK of c's IPv6 ports: {check:?}");
    ipv6_only_attachments(&bed, &world, &ea);
    // An existing network must have the IPv6 subnet the config names.
    let other = conf(
        "1.0.0",
        "d1",
        &bed.socket(),
        json!({"subnet": "10.92.1.0/24", "ipv6": true, "subnet6": "fd00:92:9::/64"}),
    );
    let d_ns = bed.new_netns("d");
    let d = Attachment::podman("d", &path_of(&d_ns), "eth0");
    let (code, msg, _) = d.run("ADD", &other.to_string()).error();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("subnet6 fd00:92:1::/64"), "{msg}");
    a.run("DEL", &a_conf.to_string()).ok();
    assert_eq!(bed.map_entries("ENDPOINT6"), 2);
    b.run("DEL", &n2.to_string()).ok();
    c.run("DEL", &c_conf.to_string()).ok();
    assert_eq!(bed.map_entries("ENDPOINT6"), 0);
    assert_eq!(bed.map_entries("PUBLISHED6"), 0);
}

/// IPv6-only networks (`--ipv6 --ipv4=false`) under netd-cni, in
/// [`dual_stack_results_and_ipv6_isolation`]'s bed (`dual` is a container
/// of its dual-stack network d1): one made by the CLI and named by a
/// config without keys, one made on first use by a config with `"ipv4":
/// false`. The result has only the IPv6 address and `::/0` route (the
/// spec's shape, `"version": "6"` in 0.4.0), the kernel only those;
/// same network allowed, the other IPv6-only network and d1 dropped by
/// netd both ways; portMappings without hostIP and with `::` are on IPv6
/// only and reached from the world with its own address, `0.0.0.0` fails
/// ADD leaving nothing; CHECK with prevResult passes; DEL removes it all.
fn ipv6_only_attachments(bed: &Bed, world: &str, dual: &Ep) {
    bed.network(
        "six",
        &["--ipv6", "--ipv4=false", "--subnet", "fd00:92:6::/64"],
    );
    let links_before = bed.host_links();
    let (endpoints6, published6) = (bed.map_entries("ENDPOINT6"), bed.map_entries("PUBLISHED6"));
    let six = |v: &str| conf(v, "six", &bed.socket(), json!({}));
    let six2 = conf(
        "1.1.0",
        "six2",
        &bed.socket(),
        json!({"ipv6": true, "ipv4": false, "subnet6": "fd00:92:7::/64"}),
    );
    let (s1_ns, s2_ns, t1_ns) = (
        bed.new_netns("s1"),
        bed.new_netns("s2"),
        bed.new_netns("t1"),
    );
    let s1 = Attachment::podman("s1", &path_of(&s1_ns), "eth0");
    let s2 = Attachment::podman("s2", &path_of(&s2_ns), "eth0");
    let t1 = Attachment::podman("t1", &path_of(&t1_ns), "eth0");
    let s1_conf = with_runtime_config(
        six("1.0.0"),
        json!({"portMappings": [
            {"hostPort": 8180, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8181, "containerPort": 81, "protocol": "tcp", "hostIP": "::"},
            {"hostPort": 8182, "containerPort": 82, "protocol": "udp"},
        ]}),
    );
    let r1 = s1.run("ADD", &s1_conf.to_string()).ok();
    let s2_conf = with_runtime_config(six("0.4.0"), json!({"ips": ["fd00:92:6::50/64"]}));
    let r2 = s2.run("ADD", &s2_conf.to_string()).ok();
    let rt = t1.run("ADD", &six2.to_string()).ok();
    assert_eq!(
        r1["ips"],
        json!([{"address": "fd00:92:6::2/64", "gateway": "fd00:92:6::1", "interface": 1}]),
        "{r1}"
    );
    assert_eq!(
        r1["routes"],
        json!([{"dst": "::/0", "gw": "fd00:92:6::1"}]),
        "{r1}"
    );
    assert_eq!(r1["dns"]["nameservers"], json!(["127.0.0.11"]), "{r1}");
    assert_eq!(
        r2["ips"],
        json!([{"address": "fd00:92:6::50/64", "gateway": "fd00:92:6::1", "interface": 1, "version": "6"}]),
        "{r2}"
    );
    assert_eq!(rt["ips"][0]["address"], "fd00:92:7::2/64", "{rt}");
    assert_eq!(rt["ips"].as_array().map(Vec::len), Some(1), "{rt}");
    let made = bed.net_info("six2");
    assert_eq!(made["EnableIPv4"], false, "{made}");
    assert_eq!(made["IPAM"]["Config"][0]["Subnet"], "fd00:92:7::/64");
    // The kernel has what the result says, and no IPv4 but lo's.
    let v4 = ip_ns(&s1_ns, &["-4", "-o", "addr", "show", "dev", "eth0"]).unwrap();
    assert_eq!(v4.trim(), "", "IPv4 on an IPv6-only attachment");
    assert_eq!(ip_ns(&s1_ns, &["-4", "route"]).unwrap().trim(), "");
    let v6 = ip_ns(
        &s1_ns,
        &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"],
    )
    .unwrap();
    assert!(v6.contains("fd00:92:6::2/64"), "{v6}");
    let route = ip_ns(&s1_ns, &["-6", "route", "show", "default"]).unwrap();
    assert!(route.contains("via fd00:92:6::1"), "{route}");
    let (e1, e2, f1) = (
        ep_of(&r1, &s1_ns, "s1"),
        ep_of(&r2, &s2_ns, "s2"),
        ep_of(&rt, &t1_ns, "t1"),
    );
    bed.expect(&[
        allow(&e1, &e2),
        allow(&e2, &e1),
        dropped(&e1, &f1, "network-isolation"),
        dropped(&f1, &e1, "network-isolation"),
        dropped(&e1, dual, "network-isolation"),
        dropped(dual, &e1, "network-isolation"),
    ]);
    let check = s1.run("CHECK", &with_prev(&s1_conf, &r1).to_string());
    assert!(
        check.success(),
        "CHECK of an IPv6-only attachment with its prevResult: {check:?}"
    );
    assert_eq!(
        bed.port_lines("s1"),
        [
            "80/tcp -> [::]:8180",
            "81/tcp -> [::]:8181",
            "82/udp -> [::]:8182"
        ],
        "netd port s1"
    );
    let srv = PortServer::start_dual(&s1_ns, &[80, 81], &[82]);
    world_reaches(
        world,
        &srv,
        &[
            (P::Tcp, at6(8180), 80),
            (P::Tcp, at6(8181), 81),
            (P::Udp, at6(8182), 82),
        ],
        &[
            (P::Tcp, at4(8180)),
            (P::Tcp, at4(8181)),
            (P::Udp, at4(8182)),
        ],
        "world -> ports of an IPv6-only CNI attachment",
    );
    drop(srv);
    // An IPv4 hostIP or a static IPv4 address (podman's --ip): the
    // agent's reason, nothing left behind.
    let u_ns = bed.new_netns("u");
    let u = Attachment::podman("u", &path_of(&u_ns), "eth0");
    let mut u_ip = u.clone();
    u_ip.extra_args = vec!["IP=10.92.6.5".into()];
    let pm =
        json!({"portMappings": [{"hostPort": 8183, "containerPort": 80, "hostIP": "0.0.0.0"}]});
    let with_v4_host = with_runtime_config(six("1.0.0"), pm);
    for (att, c, says) in [
        (&u, &with_v4_host, "has no IPv4 address"),
        (&u_ip, &six("1.0.0"), "it has no IPv4 address 10.92.6.5"),
    ] {
        let (code, msg, _) = att.run("ADD", &c.to_string()).error();
        assert_eq!(code, 100, "{msg}");
        assert!(msg.contains(says), "{msg}");
        assert_eq!(Bed::links(&u_ns), vec!["lo".to_string()]);
        assert!(!cni_containers(bed).contains(&"u".to_string()));
        att.run("DEL", &c.to_string()).ok();
    }
    // DEL: addresses, interfaces, datapath entries and ports go.
    s1.run("DEL", &with_prev(&s1_conf, &r1).to_string()).ok();
    s2.run("DEL", &with_prev(&s2_conf, &r2).to_string()).ok();
    t1.run("DEL", &six2.to_string()).ok();
    for ns in [&s1_ns, &s2_ns, &t1_ns] {
        assert_eq!(Bed::links(ns), vec!["lo".to_string()], "{ns} after DEL");
    }
    let mut now = bed.host_links();
    now.retain(|l| !l.starts_with("br-"));
    let mut before = links_before;
    before.retain(|l| !l.starts_with("br-"));
    assert_eq!(now, before, "DEL left interfaces behind");
    assert_eq!(bed.map_entries("ENDPOINT6"), endpoints6);
    assert_eq!(bed.map_entries("PUBLISHED6"), published6);
    let left = cni_containers(bed);
    assert!(
        !left
            .iter()
            .any(|c| ["s1", "s2", "t1"].contains(&c.as_str())),
        "{left:?}"
    );
}

/// The world reaches the ports of [`dual_stack_results_and_ipv6_isolation`]'s
/// container in `ns` on the families they were published on, and only there.
fn published_over_ipv6(bed: &Bed, world: &str, ns: &str) {
    assert_eq!(
        bed.port_lines("c"),
        [
            "80/tcp -> 0.0.0.0:8080",
            "80/tcp -> [::]:8080",
            "81/tcp -> [::]:8081",
            "82/udp -> [2001:db8:95::2]:8082",
            "83/tcp -> 0.0.0.0:8083",
        ],
        "netd port c"
    );
    let srv = PortServer::start_dual(ns, &[80, 81, 83], &[82]);
    let reached = [
        (P::Tcp, at6(8080), 80),
        (P::Tcp, at4(8080), 80),
        (P::Tcp, at6(8081), 81),
        (P::Udp, at6(8082), 82),
        (P::Tcp, at4(8083), 83),
    ];
    let unreached = [
        (P::Tcp, at4(8081)),
        (P::Udp, at4(8082)),
        (P::Tcp, at6(8083)),
    ];
    world_reaches(
        world,
        &srv,
        &reached,
        &unreached,
        "world -> CNI published ports over IPv6",
    );
}

/// podman's `--ip`/`--mac-address` (CNI_ARGS) and the runtimeConfig
/// capabilities `ips`/`mac`; a chosen MAC also holds where the datapath
/// delivers past the bridge (published port and masqueraded replies from
/// the uplink).
#[test]
fn static_address_and_mac() {
    let (bed, world) = world_bed();
    let n = conf(
        "1.0.0",
        "st",
        &bed.socket(),
        json!({"subnet": "10.91.0.0/24"}),
    );
    let (a_ns, b_ns) = (bed.new_netns("a"), bed.new_netns("b"));
    let mut a = Attachment::podman("a", &path_of(&a_ns), "eth0");
    a.extra_args = vec!["IP=10.91.0.50".into(), "MAC=02:aa:bb:cc:dd:01".into()];
    let pub_conf = with_runtime_config(
        n.clone(),
        json!({"portMappings": [{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}]}),
    );
    let ra = a.run("ADD", &pub_conf.to_string()).ok();
    assert_eq!(ra["ips"][0]["address"], "10.91.0.50/24");
    assert_eq!(ra["interfaces"][1]["mac"], "02:aa:bb:cc:dd:01");
    assert!(ip_ns(&a_ns, &["link", "show", "eth0"])
        .unwrap()
        .contains("02:aa:bb:cc:dd:01"));
    let b = Attachment::podman("b", &path_of(&b_ns), "net1");
    let rb = b
        .run(
            "ADD",
            &with_runtime_config(
                n.clone(),
                json!({"ips": ["10.91.0.60/24"], "mac": "02:aa:bb:cc:dd:02"}),
            )
            .to_string(),
        )
        .ok();
    assert_eq!(rb["ips"][0]["address"], "10.91.0.60/24");
    assert_eq!(rb["interfaces"][1]["name"], "net1");
    assert!(ip_ns(&b_ns, &["link", "show", "net1"])
        .unwrap()
        .contains("02:aa:bb:cc:dd:02"));
    reach_both(&ep_of(&ra, &a_ns, "a"), &ep_of(&rb, &b_ns, "b"));
    let peer = tcp_via(&a_ns, 80, &world, SocketAddrV4::new(UPLINK, 8090)).unwrap();
    assert_eq!(peer, WORLD);
    let seen = tcp(&a_ns, &Ep::new("world", &world, WORLD)).unwrap();
    assert_eq!(seen, UPLINK, "masqueraded");
    // Translated replies and hairpins are delivered to the veth with the
    // container's own MAC (a frame with another MAC would be dropped).
    let published = SocketAddrV4::new(UPLINK, 8090);
    assert_eq!(
        tcp_via(&a_ns, 80, &b_ns, published).unwrap(),
        Ipv4Addr::new(10, 91, 0, 60)
    );
    assert_eq!(
        tcp_via(&a_ns, 80, &a_ns, published).unwrap(),
        Ipv4Addr::new(10, 91, 0, 1)
    );
    // The address is taken now: a third ADD asking for it fails cleanly.
    let c_ns = bed.new_netns("c");
    let mut c = Attachment::podman("c", &path_of(&c_ns), "eth0");
    c.extra_args = vec!["IP=10.91.0.50".into()];
    let before = bed.snapshot(&["st"], &["a", "b"]);
    let (code, msg, _) = c.run("ADD", &n.to_string()).error();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("10.91.0.50"), "{msg}");
    bed.assert_unchanged(&before, &["st"], &["a", "b"], "a refused ADD");
    // podman calls DEL after a failed ADD: nothing to do, success.
    c.run("DEL", &n.to_string()).ok();
}

/// Every error path answers with the spec's error object and a non-zero
/// exit, and changes nothing.
#[test]
fn errors_are_cni_errors() {
    let bed = Bed::new();
    let ns = bed.new_netns("x");
    let a = Attachment::podman("x", &path_of(&ns), "eth0");
    let good = conf(
        "1.0.0",
        "known",
        &bed.socket(),
        json!({"subnet": "10.92.0.0/24"}),
    );
    let before = bed.snapshot(&[], &[]);
    let cases: Vec<(u64, Env, String)> = vec![
        (6, a.env("ADD"), "{not json".into()),
        (
            7,
            a.env("ADD"),
            conf("1.0.0", "nosuch", &bed.socket(), json!({})).to_string(),
        ),
        (
            1,
            a.env("ADD"),
            conf("0.3.1", "known", &bed.socket(), json!({})).to_string(),
        ),
        (
            2,
            a.env("ADD"),
            conf(
                "1.0.0",
                "known",
                &bed.socket(),
                json!({"ipam": {"type": "host-local"}}),
            )
            .to_string(),
        ),
        (
            7,
            a.env("ADD"),
            conf(
                "1.0.0",
                "known",
                &bed.socket(),
                json!({"subnet": "10.92.0.0/33"}),
            )
            .to_string(),
        ),
        (
            7,
            a.env("ADD"),
            with_runtime_config(
                good.clone(),
                json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
            )
            .to_string(),
        ),
        (
            7,
            a.env("ADD"),
            with_runtime_config(good.clone(), json!({"ips": ["fd00::5/64"]})).to_string(),
        ),
        (
            4,
            plain_env("ADD")
                .into_iter()
                .filter(|(k, _)| k != "CNI_NETNS")
                .collect(),
            good.to_string(),
        ),
        (
            4,
            a.env("ADD")
                .into_iter()
                .filter(|(k, _)| k != "CNI_COMMAND")
                .collect(),
            good.to_string(),
        ),
        (
            4,
            a.env("ADD")
                .into_iter()
                .map(|(k, v)| {
                    if k == "CNI_ARGS" {
                        (k, "FOO=1".into())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            good.to_string(),
        ),
        (
            4,
            a.env("ADD")
                .into_iter()
                .map(|(k, v)| {
                    if k == "CNI_IFNAME" {
                        (k, "a/b".into())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            good.to_string(),
        ),
        (3, a.env("CHECK"), good.to_string()),
    ];
    for (code, env, stdin) in cases {
        let out = call(&env, &stdin);
        let (got, msg, _) = out.error();
        assert_eq!(got, code, "{stdin}: {msg}");
    }
    // A netns that does not exist.
    let ghost = Attachment::podman(
        "ghost",
        std::path::Path::new("/run/netns/nt-no-such-ns"),
        "eth0",
    );
    let (code, msg, _) = ghost.run("ADD", &good.to_string()).error();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    // The network exists now (first use), but with another subnet in the config.
    let other = conf(
        "1.0.0",
        "known",
        &bed.socket(),
        json!({"subnet": "10.93.0.0/24"}),
    );
    let (code, msg, _) = a.run("ADD", &other.to_string()).error();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("10.92.0.0/24"), "{msg}");
    // An IPv6 hostIP where the attachment has no IPv6: the agent's
    // refusal, saying what to do; nothing of the attachment stays.
    for ip in ["::", "2001:db8::1"] {
        let pm = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "hostIP": ip}]});
        let (code, msg, _) = a
            .run("ADD", &with_runtime_config(good.clone(), pm).to_string())
            .error();
        assert_eq!(code, 100, "{msg}");
        assert!(
            msg.contains("the container has no IPv6 address") && msg.contains("--ipv6"),
            "{msg}"
        );
    }
    assert!(
        cni_containers(&bed).is_empty(),
        "{:?}",
        cni_containers(&bed)
    );
    bed.ok(&["network", "rm", "known"]);
    bed.assert_unchanged(&before, &[], &[], "refused calls");
    // DEL of something unknown succeeds.
    a.run("DEL", &good.to_string()).ok();
    // STATUS: 0 with the agent up; 50 when nobody answers. ADD against a
    // missing agent: 11, try again later.
    call(&plain_env("STATUS"), &good.to_string()).ok();
    let down = conf("1.1.0", "known", &bed.dir().join("nobody.sock"), json!({}));
    let (code, msg, _) = call(&plain_env("STATUS"), &down.to_string()).error();
    assert_eq!(code, 50, "{msg}");
    let (code, msg, _) = a.run("ADD", &down.to_string()).error();
    assert_eq!(code, 11, "{msg}");
    assert!(msg.contains("nobody.sock"), "{msg}");
    assert_eq!(a.run("DEL", &down.to_string()).error().0, 11);
}

/// A non-CNI container's published port stays exclusive: even a
/// SO_REUSEADDR listener is refused (the witness that the CNI holder's
/// sharing is specific to runtime-made containers).
#[test]
fn only_runtime_containers_share_their_ports() {
    let bed = Bed::new();
    bed.network("pn", &[]);
    bed.container("cli", &["--network", "pn", "-p", "8181:80"]);
    assert!(
        host_bind(&bed, 8181, true).is_err(),
        "a reuse listener took a CLI-published port"
    );
    let n = conf("1.0.0", "pn", &bed.socket(), json!({}));
    let ns = bed.new_netns("r");
    let r = Attachment::podman("r", &path_of(&ns), "eth0");
    let rc = with_runtime_config(
        n,
        json!({"portMappings": [{"hostPort": 8182, "containerPort": 80, "protocol": "tcp"}]}),
    );
    r.run("ADD", &rc.to_string()).ok();
    assert!(host_bind(&bed, 8182, false).is_err());
    host_bind(&bed, 8182, true).unwrap();
}

fn dig(ns: &str, server: &str, name: &str) -> String {
    let net = format!("--net={}", path_of(ns).display());
    let at = format!("@{server}");
    netd_tests::cmd::run_ok(
        "nsenter",
        &[&net, "dig", "+short", "+time=2", "+tries=2", &at, name],
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
    .trim()
    .to_string()
}

/// A CNI-made container is a netd container like any other: the config's
/// `icc: false` and `internal: true` hold (with witnesses), aliases and
/// names resolve through netd's DNS, and a published UDP port (not held on
/// the host for runtime containers) is reached from the world with the
/// client's address.
#[test]
fn config_keys_dns_and_udp() {
    let (bed, world) = world_bed();
    let w = Ep::new("world", &world, WORLD);
    // icc off: no traffic between the two, the gateway still answers.
    let iso = conf(
        "1.0.0",
        "iso",
        &bed.socket(),
        json!({"subnet": "10.97.0.0/24", "icc": false}),
    );
    let (i1, i2) = (bed.new_netns("i1"), bed.new_netns("i2"));
    let r1 = Attachment::podman("i1", &path_of(&i1), "eth0")
        .run("ADD", &iso.to_string())
        .ok();
    let r2 = Attachment::podman("i2", &path_of(&i2), "eth0")
        .run("ADD", &iso.to_string())
        .ok();
    blocked_both(&ep_of(&r1, &i1, "i1"), &ep_of(&r2, &i2, "i2"));
    icmp(&i1, Ipv4Addr::new(10, 97, 0, 1)).unwrap();
    assert_eq!(
        bed.net_info("iso")["Options"]["com.docker.network.bridge.enable_icc"],
        "false"
    );
    // internal: no way out, no published ports; the gateway answers.
    let int = conf(
        "1.0.0",
        "int",
        &bed.socket(),
        json!({"subnet": "10.97.1.0/24", "internal": true}),
    );
    let n1 = bed.new_netns("n1");
    let n = Attachment::podman("n1", &path_of(&n1), "eth0");
    let with_port = with_runtime_config(
        int.clone(),
        json!({"portMappings": [{"hostPort": 9000, "containerPort": 80, "protocol": "tcp"}]}),
    );
    let (code, msg, _) = n.run("ADD", &with_port.to_string()).error();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("internal"), "{msg}");
    assert_eq!(
        Bed::links(&n1),
        vec!["lo".to_string()],
        "a refused ADD left an interface"
    );
    n.run("ADD", &int.to_string()).ok();
    netd_tests::no_tcp(&n1, &w).unwrap();
    icmp(&n1, Ipv4Addr::new(10, 97, 1, 1)).unwrap();
    // DNS: the container name and runtimeConfig aliases resolve on the
    // network's resolver (the result's dns).
    let web = conf(
        "1.0.0",
        "dnsnet",
        &bed.socket(),
        json!({"subnet": "10.97.2.0/24"}),
    );
    let (d1, d2) = (bed.new_netns("d1"), bed.new_netns("d2"));
    let a = Attachment::podman("dnsa", &path_of(&d1), "eth0");
    let ra = a
        .run(
            "ADD",
            &with_runtime_config(
                web.clone(),
                json!({"aliases": {"dnsnet": ["alias-a"]},
                       "portMappings": [{"hostPort": 5353, "containerPort": 5300, "protocol": "udp"}]}),
            )
            .to_string(),
        )
        .ok();
    let rb = Attachment::podman("dnsb", &path_of(&d2), "eth0")
        .run("ADD", &web.to_string())
        .ok();
    let a_ip = ep_of(&ra, &d1, "dnsa").ip.to_string();
    let server = rb["dns"]["nameservers"][0].as_str().unwrap();
    assert_eq!(dig(&d2, server, "alias-a"), a_ip);
    assert_eq!(dig(&d2, server, "dnsa"), a_ip);
    // UDP published for a runtime container: no holder (the runtime binds
    // it), still translated by the datapath.
    let peer = udp_via(&d1, 5300, &world, SocketAddrV4::new(UPLINK, 5353)).unwrap();
    assert_eq!(peer, WORLD);
    assert!(bed.ctr_info("dnsa")["Ports"][0]["Protocol"] == "udp");
}

/// An agent restart keeps CNI-made containers: CHECK still passes (also
/// with a runtime listening on its published port, as conmon does), the
/// port still leads to the container, DEL still cleans up.
#[test]
fn cni_containers_survive_an_agent_restart() {
    let (bed, world) = world_bed();
    let n = conf(
        "1.0.0",
        "rs",
        &bed.socket(),
        json!({"subnet": "10.98.0.0/24"}),
    );
    let ns = bed.new_netns("r");
    let a = Attachment::podman("r", &path_of(&ns), "eth0");
    let c = with_runtime_config(
        n,
        json!({"portMappings": [{"hostPort": 8383, "containerPort": 80, "protocol": "tcp"}]}),
    );
    let r = a.run("ADD", &c.to_string()).ok();
    // conmon's listener, held across the restart.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = spawn_in(bed.host_ns(), move || {
        let _fd = listen_on(8383, true)?;
        let _ = ready_tx.send(());
        let _ = stop_rx.recv_timeout(std::time::Duration::from_secs(60));
        Ok(())
    });
    ready_rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("listener up");
    bed.stop_agent();
    bed.start_agent();
    assert!(
        a.run("CHECK", &with_prev(&c, &r).to_string()).success(),
        "CHECK after restart"
    );
    let peer = tcp_via(&ns, 80, &world, SocketAddrV4::new(UPLINK, 8383)).unwrap();
    assert_eq!(peer, WORLD);
    let _ = stop_tx.send(());
    netd_tests::netns::join(listener).unwrap();
    a.run("DEL", &c.to_string()).ok();
    assert_eq!(Bed::links(&ns), vec!["lo".to_string()]);
}
